# SPDX-License-Identifier: GPL-2.0-only
"""Process lifetime: spawn (fork+exec), fork, exit (kernel/fork.c, mm/mmap.c).

dup_mmap copies each VMA of the parent (vm_area_dup, VM_LOCKED cleared,
anon_vma_fork, link, copy_page_range) without merging anything; if an
allocation fails part-way, the half-built child is torn down as the kernel
does (its mm is put, every VMA already copied unlinked and freed), the
parent keeps its VMAs and pages, and fork returns ENOMEM. mmput runs
exit_mmap when the last user goes: zap every VMA, unlink_anon_vmas, free.

Lock order: the parent's mmap_lock (write) -> the child's mmap_lock; the
anon_vma locks are taken inside anon_vma_fork.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import NoMem
from .mm_types import MM, VM_LOCKED, Task
from .mmap import unmap_region, vm_area_dup
from .pgtable import copy_page_range
from .rmap.core import anon_vma_fork
from .swap import mmlist_del

if TYPE_CHECKING:
    from .mm_state import MMState


def mm_alloc(m: MMState) -> MM:
    """mm_alloc (with exec_rmap for anonmm)."""
    m.slab.alloc("mm")
    m.mm_serial += 1
    mm = MM(m.mm_serial)
    try:
        m.rmap.mm_init(mm)
    except BaseException:
        m.slab.free("mm")
        raise
    return mm


def spawn(m: MMState, name: str) -> Task:
    """A new process with an empty address space (fork + exec)."""
    mm = mm_alloc(m)
    m.pid_serial += 1
    task = Task(name, mm, m.pid_serial)
    mm.owner = task
    return task


def dup_mm(m: MMState, parent: Task) -> MM:
    """dup_mm: allocate the child's mm, then dup_mmap. Raises NoMem."""
    oldmm = parent.mm
    assert oldmm is not None  # only a live process forks
    m.slab.alloc("mm")
    m.mm_serial += 1
    mm = MM(m.mm_serial)
    try:
        m.rmap.mm_dup(mm, oldmm)
    except BaseException:
        m.slab.free("mm")
        raise
    try:
        dup_mmap(m, mm, oldmm)
    except NoMem:
        mmput(m, mm)
        raise
    return mm


def dup_mmap(m: MMState, mm: MM, oldmm: MM) -> None:
    """dup_mmap: copy every VMA and its page table, in address order."""
    for mpnt in list(oldmm.vmas):
        tmp = vm_area_dup(m, mpnt)
        tmp.mm = mm
        tmp.flags &= ~VM_LOCKED
        try:
            anon_vma_fork(m, tmp, mpnt)
        except BaseException:
            tmp.dead = True
            m.slab.free("vma")
            raise
        tmp.pt = np.zeros(mpnt.end - mpnt.start, np.int64)
        mm.link(tmp)
        copy_page_range(m, tmp, mpnt)


def fork(m: MMState, parent: Task, child_name: str) -> Task:
    """copy_process for a process (not a thread): the child gets its own mm."""
    mm = dup_mm(m, parent)
    m.pid_serial += 1
    child = Task(child_name, mm, m.pid_serial, parent)
    mm.owner = child
    return child


def exit_mmap(m: MMState, mm: MM) -> None:
    """exit_mmap: unmap_vmas, then free_pgtables and remove_vma for each VMA."""
    unmap_region(m, mm, list(mm.vmas))


def mmput(m: MMState, mm: MM) -> None:
    """mmput: the last user tears the address space down, in the order of
    Hugh Dickins' mmlist rework (October 2004): exit_mmap first, then off
    mmlist, then exit_rmap, then mmdrop."""
    mm.mm_users -= 1
    if mm.mm_users:
        return
    exit_mmap(m, mm)
    mmlist_del(m, mm)
    m.rmap.mm_exit(mm)
    mmdrop(m, mm)


def mmdrop(m: MMState, mm: MM) -> None:
    mm.mm_count -= 1
    if mm.mm_count == 0:
        mm.dead = True
        m.slab.free("mm")


def do_exit(m: MMState, task: Task) -> None:
    """exit_mm: drop the task's mm."""
    mm = task.mm
    task.mm = None
    task.alive = False
    if mm is not None:
        mmput(m, mm)


def release_task(m: MMState, task: Task) -> None:
    """release_task: the dead task leaves the task list; its name stays used
    (a later op on it gets ESRCH, a new process of that name EEXIST)."""
    del m.tasks[task.name]
    m.dead_names.add(task.name)


def get_task_mm(task: Task) -> MM | None:
    """get_task_mm as Hugh Dickins' mmlist rework (2004) has it: a reference
    on task's mm, refused for a kernel thread that borrowed the mm with
    use_mm (PF_BORROWED_MM)."""
    mm = task.mm
    if mm is None or task.flags & Task.PF_BORROWED_MM:
        return None
    mm.mm_users += 1
    return mm


def use_mm(task: Task, mm: MM) -> None:
    """use_mm (an AIO kernel thread adopts a user mm; PF_BORROWED_MM, from the
    same 2004 rework): no mm_users reference."""
    task.flags |= Task.PF_BORROWED_MM
    mm.mm_count += 1
    task.mm = mm


def unuse_mm(m: MMState, task: Task) -> None:
    mm = task.mm
    task.flags &= ~Task.PF_BORROWED_MM
    task.mm = None
    if mm is not None:
        mmdrop(m, mm)
