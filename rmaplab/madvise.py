# SPDX-License-Identifier: GPL-2.0-only
"""madvise (mm/madvise.c, Linux 6.18) for private anonymous memory.

madvise_walk_vmas applies the advice to every mapped part of the range,
holes included, and returns ENOMEM at the end if there was a hole. None of
these advices splits a VMA. dontneed, free, cold and pageout return EINVAL
on reaching a VM_LOCKED VMA, the VMAs before it already advised. dontneed
zaps; free marks pages lazily freeable; cold deactivates; pageout reclaims
now; willneed reads swapped pages into the swap cache; volatile is seed
003's (model only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import SysError
from .memory import zap_vma_range
from .mm_types import MM, VM_LOCKED, VMA

if TYPE_CHECKING:
    from .machine import Machine

LRU_ADVICE = ("dontneed", "free", "cold", "pageout")


def do_madvise(m: Machine, mm: MM, start: int, end: int, advice: str) -> None:
    """do_madvise: the walk, then ENOMEM if a hole was met."""
    if advice == "volatile":
        from .volatile import madvise_volatile
        madvise_volatile(m, mm, start, end)
        return
    madvise_walk_vmas(mm, start, end, lambda vma, lo, hi: madvise_vma(m, vma, lo, hi, advice))


def madvise_walk_vmas(mm: MM, start: int, end: int, visit) -> None:
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


def madvise_vma(m: Machine, vma: VMA, lo: int, hi: int, advice: str) -> None:
    """madvise_vma_behavior for one VMA piece."""
    if advice in LRU_ADVICE and vma.flags & VM_LOCKED:
        raise SysError("EINVAL")
    if advice == "dontneed":
        zap_vma_range(m, vma, lo, hi)
    elif advice == "free":
        m.madvise_free(vma, lo, hi)
    elif advice == "cold":
        m.madvise_cold(vma, lo, hi)
    elif advice == "pageout":
        m.madvise_pageout(vma, lo, hi)
    elif advice == "willneed":
        m.madvise_willneed(vma, lo, hi)
    else:
        raise SysError("EINVAL")
