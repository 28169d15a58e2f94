# SPDX-License-Identifier: GPL-2.0-only
"""Volatile ranges: Minchan Kim's MADV_VOLATILE, RFC v3 (seed 003).

madvise(MADV_VOLATILE) marks the range's VMAs VM_VOLATILE (splitting as
needed; VM_VOLATILE counts as VM_SPECIAL, so such VMAs never merge) and
fails with EINVAL on reaching a VM_LOCKED VMA. The length is rounded down
(the trace names whole pages, so nothing to round). Reclaim then treats the
pages as reclaimable without activation; try_to_unmap, when every VMA that
maps a page is volatile, unmaps it as usual, zaps the swap entries it just
left behind (try_to_zap_one), clears the page's dirty bit and returns
TTU.DISCARD, so the page is freed with no writeout (counted in
`pgvolatile`). The first fault on an empty entry of a VM_VOLATILE VMA takes
mmap_sem for write (counted in `mmap_sem_write`), clears the flag and merges
the VMA with its neighbours, then faults normally: discarded pages read as
zero, kept pages keep their data.

As posted, the patch still needs a swap entry to unmap a page (Minchan
Kim's answer at the end of the thread): with no swap area nothing is
discarded. Config.volatile_noswap models the RFC's stated aim instead
(embedded systems without swap): anonymous LRU aging without swap, and a
discard path that needs no swap entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import NoMem, SysError
from .mm_types import MM, VM_LOCKED, VM_VOLATILE, VMA
from .mmap import vma_merge_existing_range, vma_modify_flags

if TYPE_CHECKING:
    from .machine import Machine


def madvise_volatile(m: Machine, mm: MM, start: int, end: int) -> None:
    """madvise_behavior(MADV_VOLATILE) over the madvise walk: every VMA piece of
    [start, end) gets VM_VOLATILE; EINVAL at a locked VMA (earlier pieces
    stay marked); ENOMEM at the end if the range had a hole."""
    from .madvise import madvise_walk_vmas

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


def volatile_fault(m: Machine, vma: VMA) -> VMA:
    """handle_pte_fault's VM_VOLATILE branch: the first fault on an empty
    entry drops the flag and merges the VMA back. Returns the VMA that now
    covers the range (the merge may have absorbed vma)."""
    m.counters["mmap_sem_write"] += 1  # up_read, down_write: the cost that sank it
    flags = vma.flags & ~VM_VOLATILE
    try:
        merged = vma_merge_existing_range(m, None, vma, vma.start, vma.end, flags)
    except NoMem:
        merged = None  # the merge is an optimisation; the flag goes regardless
    if merged is not None:
        m.counters["vma_merge"] += 1
        return merged
    vma.flags = flags
    return vma


def all_mappers_volatile(vmas: list[VMA]) -> bool:
    """The RFC's is_volatile: every VMA that maps the page is VM_VOLATILE."""
    return bool(vmas) and all(v.flags & VM_VOLATILE for v in vmas)
