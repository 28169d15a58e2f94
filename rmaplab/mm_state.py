# SPDX-License-Identifier: GPL-2.0-only
"""The state of one simulated machine's memory management, and its Config.

MMState is the one root object every mm module works on: the frames
(struct pages), the kernel object slabs, the rmap scheme instance, the
tasks, the swap area, mmlist, the LRU clock, the event counters and the
walk costs. It is plain data with no behaviour above it: the mm modules
(memory.py, mmap.py, vmscan.py, ...) take it as their first argument, and
the syscall layer (machine.Machine, a subclass) dispatches into them. There
is no module-level state: two machines run side by side in one process.

It also holds the swap area's structure (SwapArea, swap_info_struct), which
the state refers to and every swap module reads; what changes it lives in
swap.py, swap_state.py and swapfile.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .eras import ERAS, Era, EraRules, is_era, rules_for
from .errors import SysError
from .mm_types import MM, VMA, Task
from .page_alloc import FrameTable
from .rmap.protocol import RmapScheme, WalkStats
from .slab import Slab
from .uapi import (
    SCHEMES,
    UNUSES,
    VARIANTS,
    Counters,
    Objects,
    SchemeName,
    Unuse,
    VariantName,
    is_scheme,
    is_unuse,
    is_variant,
)

COUNTERS = tuple(Counters.__annotations__)  # in the order the stats record lists them

#: Default frame limit: room for the 10,000 x 1,000 AIM7 scenario and more.
DEFAULT_FRAMES = 1 << 24


@dataclass(slots=True, init=False)
class Config:
    """Machine configuration (the model's sysctls and boot options).

    scheme: the rmap design (rmaplab.rmap.SCHEMES, or a variant buggy on
    purpose of rmaplab.uapi.VARIANTS: docs/posted.md). frames: usable page
    frames (a fault beyond them reclaims, then OOM-kills). vm_lock_rmap: the
    VM_LOCK_RMAP flag of Rik van Riel's anon_vma_chain patch (January 2010),
    removed before it was merged. unuse: swapoff's try_to_unuse, "2004" (Hugh
    Dickins' mmlist rework, October 2004) or "2019" (commit b56a2d8af914).
    era: "today" (every scheme on 6.18's VMA, COW and reclaim rules, the
    default) or "historical" (each scheme on its own kernel tree's rules:
    rmaplab.eras, docs/eras.md).
    volatile_noswap: discard volatile pages with no swap, the stated aim of
    Minchan Kim's volatile ranges RFC v3. check: run the invariant checker
    after every op.
    """

    scheme: SchemeName | VariantName
    frames: int
    vm_lock_rmap: bool
    unuse: Unuse
    volatile_noswap: bool
    check: bool
    era: Era

    def __init__(self, *, scheme: SchemeName | VariantName | str = "modern",
                 frames: int = DEFAULT_FRAMES, vm_lock_rmap: bool = False,
                 unuse: Unuse | str = "2019", volatile_noswap: bool = False,
                 check: bool = False, era: Era | str = "today") -> None:
        """Keywords only. Raises ValueError naming the choices for a scheme,
        unuse or era that is not one (strings from a command line are checked
        here)."""
        if not (is_scheme(scheme) or is_variant(scheme)):
            raise ValueError(f"unknown rmap scheme {scheme!r}; choose one of {', '.join(SCHEMES)} "
                             f"(or a variant buggy on purpose: {', '.join(VARIANTS)})")
        if not is_unuse(unuse):
            raise ValueError(f"unknown try_to_unuse {unuse!r}; choose one of {', '.join(UNUSES)}")
        if not is_era(era):
            raise ValueError(f"unknown era {era!r}; choose one of {', '.join(ERAS)}")
        self.era = era
        self.scheme = scheme
        self.frames = frames
        self.vm_lock_rmap = vm_lock_rmap
        self.unuse = unuse
        self.volatile_noswap = volatile_noswap
        self.check = check


class SwapArea:
    """swap_info_struct: slots, their counts, the swap cache and slot data.

    swap_map counts, per slot, the swap PTEs that name it; has_cache says
    the swap cache holds a page for it (SWAP_HAS_CACHE). A slot is free
    when both are clear. Slots are handed out lowest first.
    """

    __slots__ = ("nslots", "swap_map", "has_cache", "cache", "data", "inuse", "writeok")

    def __init__(self, nslots: int) -> None:
        self.nslots = nslots
        self.swap_map = np.zeros(nslots, np.int32)
        self.has_cache = np.zeros(nslots, bool)
        self.cache = np.full(nslots, -1, np.int64)  # frame in the swap cache, or -1
        self.data = np.zeros(nslots, np.uint8)  # what was written out
        self.inuse = 0
        self.writeok = True  # SWP_WRITEOK: cleared while swapoff empties the area

    def full(self) -> bool:
        """vm_swap_full: more than half the slots are in use."""
        return self.inuse * 2 > self.nslots

    def alloc_slot(self) -> int:
        """get_swap_page: the lowest free slot, or -1. Cost: O(slots)."""
        if not self.writeok:
            return -1
        free = np.flatnonzero((self.swap_map == 0) & ~self.has_cache)
        if not len(free):
            return -1
        slot = int(free[0])
        self.inuse += 1
        return slot

    def release_if_free(self, slot: int) -> None:
        """The slot lost a reference: count it free if it has none left."""
        if self.swap_map[slot] == 0 and not self.has_cache[slot]:
            self.inuse -= 1

    def duplicate(self, slots: np.ndarray, dst: MM, src: MM) -> None:
        """swap_duplicate at fork (mmlist placement is the caller's)."""
        np.add.at(self.swap_map, slots, 1)


class MMState:
    """All memory-management state of one simulated machine.

    config (Config), frames (page_alloc.FrameTable: every struct page),
    slab (live kernel objects), walks (rmap walk costs), counters (events,
    uapi.Counters' keys), tasks (live processes by name; dead_names keeps
    the names used), kthreads, swap (the SwapArea, or None), mmlist, kills
    (OOM victims of the op running now), lru_clock (the LRU's age
    sequence), pinned (frames a fault holds while it reclaims), the serial
    numbers of VMAs, mms and pids, rmap (the scheme instance), rules (the
    era's eras.EraRules, which the mm modules consult) and surgery_hook
    (called at each step of VMA surgery, or None).
    """

    def __init__(self, config: Config, scheme: type[RmapScheme]) -> None:
        """A machine with no task, no swap and scheme as its rmap design.

        Raises ValueError when config.frames is below 1.
        """
        if config.frames < 1:
            raise ValueError("frames must be at least 1")
        self.config = config
        self.rules: EraRules = rules_for(config.scheme, config.era)
        self.frames = FrameTable(config.frames)
        self.slab = Slab()
        self.walks = WalkStats()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.tasks: dict[str, Task] = {}
        self.dead_names: set[str] = set()
        self.kthreads: dict[str, Task] = {}  # kernel threads (kthread_create)
        self.swap: SwapArea | None = None  # the swap area while one is on
        # mms that may have swap entries (Hugh Dickins' mmlist rework, 2004)
        self.mmlist: list[MM] = []
        self.kills: list[str] = []  # OOM victims of the op running now
        self.lru_clock = 0
        # frames a fault holds while it reclaims (not reclaimable), or None
        self.pinned: np.ndarray | None = None
        self.vma_serial = 0
        self.mm_serial = 0
        self.pid_serial = 0
        self.rmap: RmapScheme = scheme(self)
        # called at each step boundary of VMA surgery (mmap.py); None: no-op.
        # The contention package's race study runs rmap walks from it.
        self.surgery_hook: Callable[[str, tuple[VMA, ...]], None] | None = None

    def surgery_point(self, name: str, *vmas: VMA) -> None:
        """A step boundary of VMA surgery (split, merge, vma_adjust) named name,
        with the VMAs it involves; a no-op unless surgery_hook is set."""
        hook = self.surgery_hook
        if hook is not None:
            hook(name, vmas)

    def task(self, name: str) -> Task:
        """The live process called name. Raises SysError("ESRCH") if none."""
        t = self.tasks.get(name)
        if t is None or not t.alive:
            raise SysError("ESRCH")
        return t

    def objects(self) -> Objects:
        """Live kernel objects by kind, and pages in use (the stats record's
        ``objects``)."""
        live = self.slab.live
        return {"vma": live["vma"], "anon_vma": live["anon_vma"],
                "anon_vma_chain": live["anon_vma_chain"], "pte_chain": live["pte_chain"],
                "anonmm": live["anonmm"], "page": self.frames.used}
