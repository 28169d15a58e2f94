# SPDX-License-Identifier: GPL-2.0-only
"""The simulated machine's syscall layer: Machine, the model's entry point.

Machine is the machine state (mm_state.MMState: frames, slabs, the rmap
scheme, tasks, swap, LRU, counters, walk costs) with the syscalls of the
trace format (docs/trace-format.md) as its methods. Each syscall checks
its task and converts bytes to pages, then calls the mm module that models
it (fork.py, mmap.py, memory.py, vmscan.py, ...); nothing below imports
this module. Each returns normally or raises SysError (an errno), Segv or
OomKill, and the replay layer turns that into a result record.

Frames are finite (Config.frames). A fault that needs more than are free
asks reclaim first, then the OOM killer: the task with the largest rss plus
swap entries dies (ties: the lowest name), possibly the faulting one.
"""

from __future__ import annotations

from typing import Any, cast

from . import fork as fork_mod
from .consts import PAGE_SHIFT
from .debug_vm import check_machine
from .errors import SysError
from .madvise import do_madvise
from .memory import handle_mm_fault_range
from .mlock import do_mlock
from .mm_state import COUNTERS, DEFAULT_FRAMES, Config, MMState
from .mm_types import (
    MM,
    PTE_PRESENT,
    PTE_SHIFT,
    PTE_SWAP,
    VM_LOCKED,
    Task,
    flags_to_prot,
    prot_to_flags,
)
from .mmap import do_mmap, do_vmi_munmap
from .mprotect import do_mprotect
from .mremap import do_mremap
from .rmap.schemes import scheme_class
from .snapshot import ZERO, RawPage, RawTask, RawVma, canonical_snapshot
from .swapfile import sys_swapoff, sys_swapon
from .uapi import Advice, Counters, Prot, RmapBytes, Stats
from .vmscan import try_to_free_pages

__all__ = ["COUNTERS", "DEFAULT_FRAMES", "Config", "Machine"]


class Machine(MMState):
    """One simulated machine: its memory-management state and its syscalls.

    Build one with a Config (or Config's fields as keywords), then call the
    trace ops as methods: spawn, fork, exit; mmap, munmap, mprotect,
    mremap, mlock, munlock, madvise; read and write (the faults); swapon,
    swapoff, reclaim. Observe it with snapshot, stats and objects, and
    check its invariants with check. Addresses are in bytes, sizes in 4096
    byte pages, as in a trace; prot is one of uapi.PROTS ("rw", "r",
    "none"), advice one of uapi.ADVICES, the scheme one of rmap.SCHEMES. The
    state (frames, slab, rmap, tasks, swap, counters, walks, ...) is
    readable as attributes (see MMState).

    Errors: SysError(errno) as the syscall would return it (ESRCH for a task
    that does not exist or has exited, ENOMEM when an allocation fails, ...),
    Segv for an access the kernel answers with SIGSEGV, OomKill when the
    faulting task itself was the OOM killer's victim.
    """

    def __init__(self, config: Config | None = None, **kw: Any) -> None:
        """A machine with no task and no swap. Raises ValueError for a bad
        scheme name or a frame limit below 1."""
        cfg = config if config is not None else Config(**kw)
        super().__init__(cfg, scheme_class(cfg.scheme))

    # -- tasks ---------------------------------------------------------------
    def _mm(self, name: str) -> MM:
        """The mm of live process name (ESRCH if none)."""
        mm = self.task(name).mm
        assert mm is not None  # a process loses its mm only when it exits
        return mm

    def spawn(self, name: str) -> None:
        """A new process with an empty address space (fork + exec; the trace's
        `spawn`). Raises SysError EEXIST if the name was ever used, ENOMEM
        if the mm cannot be allocated."""
        if name in self.tasks or name in self.dead_names:
            raise SysError("EEXIST")
        self.tasks[name] = fork_mod.spawn(self, name)

    def fork(self, name: str, child: str) -> None:
        """fork: child gets a copy of name's address space, every private page
        shared copy-on-write (kernel/fork.c dup_mmap, anon_vma_fork,
        copy_page_range). Raises SysError ESRCH (no such parent), EEXIST
        (child's name used), ENOMEM (an allocation failed: nothing of the
        child is left, and its name stays used).

        Cost: O(VMAs + PTEs of the parent) in numpy, plus the scheme's
        anon_vma_fork per VMA (charged to counters["rmap_ops"] by pte_chain).
        """
        parent = self.task(name)
        if child in self.tasks or child in self.dead_names:
            raise SysError("EEXIST")
        try:
            self.tasks[child] = fork_mod.fork(self, parent, child)
        except SysError:
            self.dead_names.add(child)  # a failed fork's name stays used: ESRCH later
            raise

    def exit(self, name: str) -> None:
        """exit: the process's mm is put (exit_mmap when it was the last user)
        and its name stays used. Raises SysError ESRCH.

        Cost: O(VMAs + PTEs) of the address space when the mm goes.
        """
        task = self.task(name)
        fork_mod.do_exit(self, task)
        fork_mod.release_task(self, task)

    # -- kernel threads and borrowed mms (AIO's use_mm, Hugh Dickins, 2004) ----
    def kthread_create(self, name: str) -> Task:
        """kthread_create: a kernel thread (PF_KTHREAD) without an mm of its own.

        Kept in ``kthreads``, apart from ``tasks``: it has no address space to
        snapshot or check, and the OOM killer never picks it. Raises
        SysError EEXIST if the name is used.
        """
        if name in self.tasks or name in self.dead_names or name in self.kthreads:
            raise SysError("EEXIST")
        self.pid_serial += 1
        kt = Task(name, None, self.pid_serial)
        kt.flags |= Task.PF_KTHREAD
        self.kthreads[name] = kt
        return kt

    def use_mm(self, kthread: str, name: str) -> None:
        """use_mm: the kernel thread adopts the task's mm to do its AIO, with an
        mm_count reference only (PF_BORROWED_MM set). Raises SysError EBUSY
        if it already holds one (the kernel would BUG), ESRCH if the task
        has gone."""
        kt = self.kthreads[kthread]
        if kt.mm is not None:
            raise SysError("EBUSY")
        fork_mod.use_mm(kt, self._mm(name))

    def unuse_mm(self, kthread: str) -> None:
        """unuse_mm: the kernel thread gives the mm back (PF_BORROWED_MM cleared)."""
        fork_mod.unuse_mm(self, self.kthreads[kthread])

    def get_task_mm(self, name: str) -> MM | None:
        """get_task_mm on a process or a kernel thread: an mm_users reference the
        caller drops with mmput, or None (no mm, or a borrowed one). Raises
        SysError ESRCH for a process that has gone."""
        t = self.kthreads.get(name)
        return fork_mod.get_task_mm(t if t is not None else self.task(name))

    def mmput(self, mm: MM) -> None:
        """mmput: drop an mm_users reference (the last one tears the mm down)."""
        fork_mod.mmput(self, mm)

    # -- address-space syscalls (addresses in bytes, sizes in pages) -----------
    def mmap(self, name: str, addr: int, pages: int, prot: Prot) -> None:
        """mmap(addr, pages, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE):
        a new private anonymous range, merged into a neighbour when it can be
        (mm/mmap.c, mm/vma.c). Raises SysError ESRCH, EEXIST (the range
        overlaps a mapping), ENOMEM (no VMA could be allocated).

        Cost: O(log VMAs), plus O(pages) for the zeroed page table.
        """
        do_mmap(self, self._mm(name), addr >> PAGE_SHIFT, pages, prot_to_flags(prot))

    def munmap(self, name: str, addr: int, pages: int) -> None:
        """munmap: unmap [addr, addr + pages), splitting the VMAs at its edges
        (do_vmi_munmap). Raises SysError ESRCH, ENOMEM (a split could not
        allocate; a split already done stays).

        Cost: O(PTEs of the range) to zap, O(log VMAs) per VMA.
        """
        vpn = addr >> PAGE_SHIFT
        do_vmi_munmap(self, self._mm(name), vpn, vpn + pages)

    def mprotect(self, name: str, addr: int, pages: int, prot: Prot) -> None:
        """mprotect: new protection for each VMA of the range, merging or
        splitting; removing write write-protects the PTEs (mm/mprotect.c).
        Raises SysError ESRCH, ENOMEM (a hole in the range, VMAs before it
        changed; or an allocation failed).
        """
        vpn = addr >> PAGE_SHIFT
        do_mprotect(self, self._mm(name), vpn, vpn + pages, prot_to_flags(prot))

    def mremap(self, name: str, addr: int, pages: int, new_pages: int,
               new_addr: int | None = None) -> None:
        """mremap: shrink, grow in place, or (with new_addr, MREMAP_MAYMOVE|
        MREMAP_FIXED) move the range (mm/mremap.c). Raises SysError ESRCH,
        EINVAL (old and new ranges overlap), EFAULT (the range is not in one
        VMA), ENOMEM (no room to grow, or an allocation failed).

        Cost: O(PTEs moved) in numpy, plus the scheme's ptes_moved.
        """
        na = None if new_addr is None else new_addr >> PAGE_SHIFT
        do_mremap(self, self._mm(name), addr >> PAGE_SHIFT, pages, new_pages, na)

    def mlock(self, name: str, addr: int, pages: int) -> None:
        """mlock: VM_LOCKED on each VMA of the range, then populate it (write
        faults where writable, breaking COW). Raises SysError ESRCH, ENOMEM
        (a hole, or a PROT_NONE VMA that cannot be populated), OomKill.

        Cost: that of a write (or read) of the whole range.
        """
        vpn = addr >> PAGE_SHIFT
        do_mlock(self, self._mm(name), vpn, vpn + pages, True)

    def munlock(self, name: str, addr: int, pages: int) -> None:
        """munlock: VM_LOCKED cleared on each VMA of the range, merging or
        splitting. Raises SysError ESRCH, ENOMEM (a hole, or an allocation)."""
        vpn = addr >> PAGE_SHIFT
        do_mlock(self, self._mm(name), vpn, vpn + pages, False)

    def madvise(self, name: str, addr: int, pages: int, advice: Advice) -> None:
        """madvise(advice) over the range (mm/madvise.c): dontneed zaps, free
        marks pages lazily freeable, cold deactivates, pageout reclaims now,
        willneed reads swapped pages into the swap cache, volatile marks the
        VMAs VM_VOLATILE (model only). Raises SysError ESRCH, EINVAL (a
        VM_LOCKED VMA for dontneed/free/cold/pageout/volatile, or an unknown
        advice), ENOMEM (a hole in the range, after advising the rest).

        Cost: pageout as reclaim of the range's pages; the others O(PTEs).
        """
        vpn = addr >> PAGE_SHIFT
        do_madvise(self, self._mm(name), vpn, vpn + pages, advice)

    def write(self, name: str, addr: int, pages: int, value: int) -> None:
        """Store value (one byte) to every page of the range in address order,
        faulting as needed (handle_mm_fault: do_anonymous_page, do_wp_page,
        do_swap_page). Raises Segv at the first page not mapped writable
        (earlier pages stay written), OomKill, SysError ESRCH.

        Cost: a few numpy operations per VMA piece and kind of PTE in the
        range (counters pgfault, cow, cow_reuse), one step per swap PTE.
        """
        vpn = addr >> PAGE_SHIFT
        handle_mm_fault_range(self, self._mm(name), vpn, vpn + pages, True, value, None)

    def read(self, name: str, addr: int, pages: int, values: list[int]) -> list[int]:
        """Load one byte from every page of the range into values, in address
        order, faulting as needed (the zero page for an empty PTE). Raises
        Segv at the first page not mapped readable (values holds what was
        read before it), OomKill, SysError ESRCH. Returns values.

        Cost: as write.
        """
        vpn = addr >> PAGE_SHIFT
        handle_mm_fault_range(self, self._mm(name), vpn, vpn + pages, False, 0, values)
        return values

    # -- swap and reclaim -----------------------------------------------------------
    def swapon(self, pages: int) -> None:
        """swapon: a swap area of pages slots. Raises SysError EBUSY if one is on."""
        sys_swapon(self, pages)

    def swapoff(self) -> None:
        """swapoff: bring every swapped page back (try_to_unuse, the version
        Config.unuse names), then remove the area. Raises SysError EINVAL
        (no swap area), ENOMEM (out of memory with nothing left to kill: the
        area stays).

        Cost: charged to counters swapoff_mms and swapoff_ptes, what the
        chosen try_to_unuse would scan.
        """
        sys_swapoff(self)

    def reclaim(self, pages: int) -> int:
        """Global reclaim of up to pages pages (try_to_free_pages: the LRU
        scanned oldest first, referenced pages activated, the rest swapped
        out or discarded). Returns the pages freed.

        Cost: O(frames log frames) per pass to order the LRU, and per page
        scanned a page_referenced walk and at most one try_to_unmap walk
        (charges walks).
        """
        return try_to_free_pages(self, pages)

    # -- observation --------------------------------------------------------------
    def raw_task(self, task: Task) -> RawTask:
        """One task's VMAs and non-empty PTEs with physical identities."""
        rt = RawTask()
        ft = self.frames
        mm = task.mm
        assert mm is not None  # only live tasks are observed
        for vma in mm.vmas:
            rt.vmas.append(RawVma(vma.start << PAGE_SHIFT, vma.end << PAGE_SHIFT,
                                  flags_to_prot(vma.flags), bool(vma.flags & VM_LOCKED)))
            pt = vma.pt
            for i in pt.nonzero()[0].tolist():
                pte = int(pt[i])
                addr = (vma.start + i) << PAGE_SHIFT
                ident = pte >> PTE_SHIFT
                if pte & PTE_PRESENT:
                    if ident == 0:
                        rt.pages.append(RawPage(addr, "present", ZERO))
                    else:
                        rt.pages.append(RawPage(addr, "present", ident, int(ft.mapcount[ident])))
                elif pte & PTE_SWAP:
                    rt.pages.append(RawPage(addr, "swap", ("swap", ident)))
        return rt

    def snapshot(self, label: str) -> dict[str, Any]:
        """The observable state as the trace format's snapshot record: every
        task's VMAs and pages, frames named canonically (docs/trace-format.md).

        Cost: O(non-empty PTEs).
        """
        return canonical_snapshot(label, {name: self.raw_task(t) for name, t in self.tasks.items()})

    def stats(self, label: str) -> Stats:
        """The trace format's stats record: walk costs, live objects, rmap
        metadata bytes and event counters (plain dicts; see uapi.Stats)."""
        return {"label": label, "scheme": self.rmap.name, "walks": self.walks.as_dict(),
                "objects": self.objects(),
                "rmap_bytes": cast(RmapBytes, self.rmap.rmap_bytes()),
                "counters": cast(Counters, dict(self.counters))}

    def check(self) -> None:
        """Run the invariant checker (CONFIG_DEBUG_VM); raises ModelBug.

        Cost: O(PTEs + frames), and one uncharged rmap walk per mapped frame.
        """
        check_machine(self)
