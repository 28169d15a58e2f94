# SPDX-License-Identifier: GPL-2.0-only
"""The simulated machine: the one object that holds all global state.

A Machine owns the frames (struct pages), the kernel object slabs, the rmap
scheme, the tasks, the swap area, mmlist, the LRU, the event counters and
the walk costs. There is no module-level state: two machines run side by
side in one process. Its methods are the syscalls of the trace format; each
returns normally or raises SysError (an errno), Segv or OomKill, and the
replay layer turns that into a result record.

Frames are finite (Config.frames). A fault that needs more than are free
asks reclaim first, then the OOM killer: the task with the largest rss plus
swap entries dies (ties: the lowest name), possibly the faulting one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import fork as fork_mod
from .consts import PAGE_SHIFT
from .errors import OomKill, SysError
from .madvise import do_madvise
from .memory import handle_mm_fault_range
from .mlock import do_mlock
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
from .page_alloc import FrameTable
from .rmap import WalkStats, scheme_class
from .slab import Slab
from .snapshot import ZERO, RawPage, RawTask, RawVma, canonical_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from .mm_types import VMA
    from .swapfile import SwapArea

COUNTERS = ("pgfault", "cow", "cow_reuse", "pgscan", "pgsteal", "pswpin", "pswpout",
            "pgvolatile", "trylock_fail", "oom_kill", "lazyfree_discard", "swapoff_mms",
            "swapoff_ptes",
            # rmap: page_add_rmap/page_remove_rmap calls that edit a pte_chain
            # (seed 001: why fork was slow), page_table_lock trylocks taken by
            # rmap walks (seed 001's try_to_unmap, seed 000's walks; trylock_fail,
            # their failures, stays 0 in replay: one CPU, nothing concurrent;
            # only the contention model's simulated CPUs fail one), and
            # private copies anonmm forces (mremap, swap-in at another address)
            "rmap_ops", "trylock", "early_cow",
            # seed 003: exclusive mmap_sem taken, VMA splits and merges it cost
            "mmap_sem_write", "vma_split", "vma_merge")

#: Default frame limit: room for the 10,000 x 1,000 AIM7 scenario and more.
DEFAULT_FRAMES = 1 << 24


@dataclass(slots=True, kw_only=True)
class Config:
    """Machine configuration (the model's sysctls and boot options)."""

    scheme: str = "modern"
    frames: int = DEFAULT_FRAMES
    vm_lock_rmap: bool = False  # seed 002's VM_LOCK_RMAP, removed as merged
    unuse: str = "2019"  # try_to_unuse: "2004" (seed 004) or "2019" (b56a2d8af914)
    volatile_noswap: bool = False  # seed 003's aim: discard volatile pages with no swap
    check: bool = False  # run the invariant checker after every op


class Machine:
    """All state of one simulated machine."""

    def __init__(self, config: Config | None = None, **kw) -> None:
        self.config = config if config is not None else Config(**kw)
        if self.config.frames < 1:
            raise ValueError("frames must be at least 1")
        self.frames = FrameTable(self.config.frames)
        self.slab = Slab()
        self.walks = WalkStats()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.tasks: dict[str, Task] = {}
        self.dead_names: set[str] = set()
        self.kthreads: dict[str, Task] = {}  # kernel threads (kthread_create)
        self.swap: SwapArea | None = None  # the swap area while one is on
        self.mmlist: list[MM] = []  # seed 004: mms that may have swap entries
        self.kills: list[str] = []  # OOM victims of the op running now
        self.lru_clock = 0
        self.pinned = None  # frames a fault holds while it reclaims (not reclaimable)
        self.vma_serial = 0
        self.mm_serial = 0
        self.pid_serial = 0
        self.rmap = scheme_class(self.config.scheme)(self)
        # called at each step boundary of VMA surgery (mmap.py); None: no-op.
        # The contention package's race study runs rmap walks from it.
        self.surgery_hook: Callable[[str, tuple[VMA, ...]], None] | None = None

    def surgery_point(self, name: str, *vmas) -> None:
        """A step boundary of VMA surgery (split, merge, vma_adjust) named name,
        with the VMAs it involves; a no-op unless surgery_hook is set."""
        hook = self.surgery_hook
        if hook is not None:
            hook(name, vmas)

    # -- tasks ---------------------------------------------------------------
    def task(self, name: str) -> Task:
        t = self.tasks.get(name)
        if t is None or not t.alive:
            raise SysError("ESRCH")
        return t

    def _mm(self, name: str) -> MM:
        """The mm of live process name (ESRCH if none)."""
        mm = self.task(name).mm
        assert mm is not None  # a process loses its mm only when it exits
        return mm

    def spawn(self, name: str) -> None:
        if name in self.tasks or name in self.dead_names:
            raise SysError("EEXIST")
        self.tasks[name] = fork_mod.spawn(self, name)

    def fork(self, name: str, child: str) -> None:
        parent = self.task(name)
        if child in self.tasks or child in self.dead_names:
            raise SysError("EEXIST")
        try:
            self.tasks[child] = fork_mod.fork(self, parent, child)
        except SysError:
            self.dead_names.add(child)  # a failed fork's name stays used: ESRCH later
            raise

    def exit(self, name: str) -> None:
        self._kill(self.task(name))

    def _kill(self, task: Task) -> None:
        fork_mod.do_exit(self, task)
        del self.tasks[task.name]
        self.dead_names.add(task.name)

    # -- kernel threads and borrowed mms (seed 004: AIO's use_mm) ---------------
    def kthread_create(self, name: str) -> Task:
        """kthread_create: a kernel thread (PF_KTHREAD) without an mm of its own.

        Kept in ``kthreads``, apart from ``tasks``: it has no address space to
        snapshot or check, and the OOM killer never picks it.
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
        mm_count reference only (PF_BORROWED_MM set)."""
        kt = self.kthreads[kthread]
        if kt.mm is not None:
            raise SysError("EBUSY")  # the kernel would BUG: one mm at a time
        fork_mod.use_mm(kt, self._mm(name))

    def unuse_mm(self, kthread: str) -> None:
        """unuse_mm: the kernel thread gives the mm back (PF_BORROWED_MM cleared)."""
        fork_mod.unuse_mm(self, self.kthreads[kthread])

    def get_task_mm(self, name: str) -> MM | None:
        """get_task_mm on a process or a kernel thread: an mm_users reference the
        caller drops with mmput, or None (no mm, or a borrowed one)."""
        t = self.kthreads.get(name)
        return fork_mod.get_task_mm(t if t is not None else self.task(name))

    def mmput(self, mm: MM) -> None:
        """mmput: drop an mm_users reference (the last one tears the mm down)."""
        fork_mod.mmput(self, mm)

    # -- address-space syscalls (addresses in bytes, sizes in pages) -----------
    def mmap(self, name: str, addr: int, pages: int, prot: str) -> None:
        do_mmap(self, self._mm(name), addr >> PAGE_SHIFT, pages, prot_to_flags(prot))

    def munmap(self, name: str, addr: int, pages: int) -> None:
        vpn = addr >> PAGE_SHIFT
        do_vmi_munmap(self, self._mm(name), vpn, vpn + pages)

    def mprotect(self, name: str, addr: int, pages: int, prot: str) -> None:
        vpn = addr >> PAGE_SHIFT
        do_mprotect(self, self._mm(name), vpn, vpn + pages, prot_to_flags(prot))

    def mremap(self, name: str, addr: int, pages: int, new_pages: int,
               new_addr: int | None = None) -> None:
        na = None if new_addr is None else new_addr >> PAGE_SHIFT
        do_mremap(self, self._mm(name), addr >> PAGE_SHIFT, pages, new_pages, na)

    def mlock(self, name: str, addr: int, pages: int) -> None:
        vpn = addr >> PAGE_SHIFT
        do_mlock(self, self._mm(name), vpn, vpn + pages, True)

    def munlock(self, name: str, addr: int, pages: int) -> None:
        vpn = addr >> PAGE_SHIFT
        do_mlock(self, self._mm(name), vpn, vpn + pages, False)

    def madvise(self, name: str, addr: int, pages: int, advice: str) -> None:
        vpn = addr >> PAGE_SHIFT
        do_madvise(self, self._mm(name), vpn, vpn + pages, advice)

    def write(self, name: str, addr: int, pages: int, value: int) -> None:
        vpn = addr >> PAGE_SHIFT
        handle_mm_fault_range(self, self._mm(name), vpn, vpn + pages, True, value, None)

    def read(self, name: str, addr: int, pages: int, values: list[int]) -> list[int]:
        """Loads into values (kept up to a fault, which raises Segv)."""
        vpn = addr >> PAGE_SHIFT
        handle_mm_fault_range(self, self._mm(name), vpn, vpn + pages, False, 0, values)
        return values

    # -- swap and reclaim (swapfile.py and vmscan.py fill these in) --------------
    def swapon(self, pages: int) -> None:
        from .swapfile import sys_swapon
        sys_swapon(self, pages)

    def swapoff(self) -> None:
        from .swapfile import sys_swapoff
        sys_swapoff(self)

    def reclaim(self, pages: int) -> int:
        from .vmscan import try_to_free_pages
        return try_to_free_pages(self, pages)

    def reclaim_for(self, pages: int) -> None:
        """Direct reclaim before a fault gives up on frames."""
        from .vmscan import try_to_free_pages
        try_to_free_pages(self, pages)

    def madvise_free(self, vma, lo: int, hi: int) -> None:
        from .vmscan import madvise_free
        madvise_free(self, vma, lo, hi)

    def madvise_cold(self, vma, lo: int, hi: int) -> None:
        from .vmscan import madvise_cold
        madvise_cold(self, vma, lo, hi)

    def madvise_pageout(self, vma, lo: int, hi: int) -> None:
        from .vmscan import madvise_pageout
        madvise_pageout(self, vma, lo, hi)

    def madvise_willneed(self, vma, lo: int, hi: int) -> None:
        from .vmscan import madvise_willneed
        madvise_willneed(self, vma, lo, hi)

    def lru_add(self, frames) -> None:
        from .vmscan import lru_add
        lru_add(self, frames)

    def lru_del(self, frames) -> None:
        from .vmscan import lru_del
        lru_del(self, frames)

    def mmlist_del(self, mm: MM) -> None:
        if mm.on_mmlist:
            self.mmlist.remove(mm)
            mm.on_mmlist = False

    # -- OOM --------------------------------------------------------------------
    def out_of_memory(self, faulting: MM | None) -> None:
        """out_of_memory: kill the task with the largest rss + swap entries.

        Raises OomKill when the victim is the faulting task itself.
        """
        def badness(t: Task) -> tuple[int, str]:
            mm = t.mm
            assert mm is not None  # every task in tasks is alive
            return -(mm.rss + mm.swapents), t.name

        victims = sorted(self.tasks.values(), key=badness)
        victim = victims[0]
        self.counters["oom_kill"] += 1
        self.kills.append(victim.name)
        self._kill(victim)
        victim.killed = True
        if faulting is not None and faulting.owner is victim:
            raise OomKill(victim.name)

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

    def snapshot(self, label: str) -> dict:
        """The observable state, canonical as TRACE_FORMAT.md's snapshot."""
        return canonical_snapshot(label, {name: self.raw_task(t) for name, t in self.tasks.items()})

    def objects(self) -> dict[str, int]:
        live = self.slab.live
        return {"vma": live["vma"], "anon_vma": live["anon_vma"],
                "anon_vma_chain": live["anon_vma_chain"], "pte_chain": live["pte_chain"],
                "anonmm": live["anonmm"], "page": self.frames.used}

    def stats(self, label: str) -> dict:
        """TRACE_FORMAT.md's stats record."""
        return {"label": label, "scheme": self.rmap.name, "walks": self.walks.as_dict(),
                "objects": self.objects(), "rmap_bytes": self.rmap.rmap_bytes(),
                "counters": dict(self.counters)}

    def check(self) -> None:
        """Run the invariant checker (CONFIG_DEBUG_VM); raises ModelBug."""
        from .debug_vm import check_machine
        check_machine(self)
