# SPDX-License-Identifier: GPL-2.0-only
"""madvise (mm/madvise.c, Linux 6.18) for private anonymous memory.

madvise_walk_vmas applies the advice to every mapped part of the range,
holes included, and returns ENOMEM at the end if there was a hole. None of
these advices splits a VMA but volatile. dontneed, free, cold and pageout
return EINVAL on reaching a VM_LOCKED VMA, the VMAs before it already
advised. dontneed zaps; free marks pages lazily freeable, cold deactivates
and pageout reclaims now (vmscan.py); willneed reads swapped pages into the
swap cache; volatile is Minchan Kim's MADV_VOLATILE of the volatile ranges
RFC v3 (December 2012; model only, see volatile.py), which the RFC added to
madvise.c too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .errors import SysError
from .mm_types import MM, PTE_SHIFT, PTE_SWAP, VM_LOCKED, VM_VOLATILE, VMA
from .mmap import vma_modify_flags
from .pgtable import zap_vma_range
from .swap_state import swapin_to_cache
from .vmscan import madvise_cold, madvise_free, madvise_pageout

if TYPE_CHECKING:
    from .mm_state import MMState
    from .uapi import Advice

LRU_ADVICE = ("dontneed", "free", "cold", "pageout")


def do_madvise(m: MMState, mm: MM, start: int, end: int, advice: Advice | str) -> None:
    """do_madvise: the walk, then ENOMEM if a hole was met."""
    if advice == "volatile":
        madvise_volatile(m, mm, start, end)
        return
    madvise_walk_vmas(mm, start, end, lambda vma, lo, hi: madvise_vma(m, vma, lo, hi, advice))


def madvise_walk_vmas(mm: MM, start: int, end: int,
                      visit: Callable[[VMA, int, int], None]) -> None:
    """madvise_walk_vmas: visit(vma, lo, hi) for every mapped piece of
    [start, end) in address order (visit may raise to stop the walk); then
    ENOMEM if the range had a hole or nothing mapped."""
    unmapped = False
    vpn = start
    vma = mm.find_vma(vpn)
    while True:
        if vma is None:
            raise SysError("ENOMEM")
        if vpn < vma.start:
            unmapped = True
            vpn = vma.start
            if vpn >= end:
                break
        hi = min(vma.end, end)
        visit(vma, vpn, hi)
        vpn = hi
        if vpn >= end:
            break
        vma = mm.find_vma(vpn)
    if unmapped:
        raise SysError("ENOMEM")


def madvise_vma(m: MMState, vma: VMA, lo: int, hi: int, advice: Advice | str) -> None:
    """madvise_vma_behavior for one VMA piece."""
    if advice in LRU_ADVICE and vma.flags & VM_LOCKED:
        raise SysError("EINVAL")
    if advice == "dontneed":
        zap_vma_range(m, vma, lo, hi)
    elif advice == "free":
        madvise_free(m, vma, lo, hi)
    elif advice == "cold":
        madvise_cold(m, vma, lo, hi)
    elif advice == "pageout":
        madvise_pageout(m, vma, lo, hi)
    elif advice == "willneed":
        madvise_willneed(m, vma, lo, hi)
    else:
        raise SysError("EINVAL")


def madvise_willneed(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """madvise_willneed: read the range's swapped pages into the swap cache;
    their PTEs stay swap entries until a fault maps them. Best effort: it
    stops when no frame is free."""
    if m.swap is None:
        return
    i0 = lo - vma.start
    seg = vma.pt[i0:hi - vma.start]
    for slot in (seg[np.flatnonzero(seg & PTE_SWAP)] >> PTE_SHIFT).tolist():
        if m.swap.cache[slot] < 0:
            if m.frames.nr_free < 1:
                return
            swapin_to_cache(m, slot, vma.mm)


def madvise_volatile(m: MMState, mm: MM, start: int, end: int) -> None:
    """madvise_behavior(MADV_VOLATILE) over the madvise walk: every VMA piece of
    [start, end) gets VM_VOLATILE; EINVAL at a locked VMA (earlier pieces
    stay marked); ENOMEM at the end if the range had a hole."""
    m.counters["mmap_sem_write"] += 1  # flag changes need mmap_sem for write

    def mark(vma: VMA, lo: int, hi: int) -> None:
        if vma.flags & VM_LOCKED:
            raise SysError("EINVAL")
        if not vma.flags & VM_VOLATILE:
            before = len(mm.vmas)
            piece = vma_modify_flags(m, None, vma, lo, hi, vma.flags | VM_VOLATILE)
            piece.flags |= VM_VOLATILE
            m.counters["vma_split"] += len(mm.vmas) - before

    madvise_walk_vmas(mm, start, end, mark)
