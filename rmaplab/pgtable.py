# SPDX-License-Identifier: GPL-2.0-only
"""Page-table range operations that need no new page (mm/memory.c, 6.18).

zap_pte_range (munmap, exit, MADV_DONTNEED) and copy_page_range (fork).
The kernel keeps them in memory.c beside the fault path; here they sit
below it, because VMA surgery (mmap.py) and process exit (fork.py), which
the fault path reaches through the OOM killer and volatile ranges, need
them.

Invariants kept: a present anonymous PTE holds a reference on its frame and
adds one to its mapcount; the zero page is referenced by neither;
mm.rss counts present anonymous (non-zero) PTEs, mm.swapents swap PTEs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .mm_types import PTE_PRESENT, PTE_SHIFT, PTE_SWAP, PTE_SWP_EXCLUSIVE, PTE_WRITE, PTE_YOUNG
from .rmap.core import page_dup_rmap, page_remove_rmap
from .swap import free_swap_and_cache, free_swap_cache, mmlist_add_after, put_pages

if TYPE_CHECKING:
    from .mm_state import MMState
    from .mm_types import VMA

_P, _W, _Y, _S = PTE_PRESENT, PTE_WRITE, PTE_YOUNG, PTE_SWAP


def zap_vma_range(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """zap_pte_range over [lo, hi) of vma: drop every PTE, present or swap."""
    i0, i1 = lo - vma.start, hi - vma.start
    seg = vma.pt[i0:i1]
    nz = np.flatnonzero(seg)
    if not len(nz):
        return
    ptes = seg[nz]
    anon = ((ptes & _P) != 0) & ((ptes >> PTE_SHIFT) != 0)
    if anon.any():
        frames = ptes[anon] >> PTE_SHIFT
        page_remove_rmap(m, frames, vma, vma.start + i0 + nz[anon])
        vma.mm.rss -= len(frames)
        free_swap_cache(m, frames)
        put_pages(m, frames)
    swp = (ptes & _S) != 0
    if swp.any():
        vma.mm.swapents -= int(np.count_nonzero(swp))
        seg[nz] = 0  # the PTEs go first: freeing the cache may look for mappings
        free_swap_and_cache(m, ptes[swp] >> PTE_SHIFT)
    seg[nz] = 0


def copy_page_range(m: MMState, dst: VMA, src: VMA) -> None:
    """copy_page_range at fork: share every PTE of src with dst, COW.

    vma_needs_copy: a VMA without an anon_vma copies nothing (its zero-page
    entries are faulted again later). Present anonymous pages are
    write-protected in both, lose PG_anon_exclusive and gain a mapping; the
    child's copies start old (pte_mkold). Swap entries are duplicated.
    Cost: O(PTEs of src) in numpy.
    """
    if src.lineage is None:
        return
    pt = src.pt
    nz = np.flatnonzero(pt)
    if not len(nz):
        return
    ptes = pt[nz]
    present = (ptes & _P) != 0
    # COW: write-protect present PTEs; a swap PTE loses its exclusive bit
    ptes = np.where(present, ptes & ~_W, ptes & ~PTE_SWP_EXCLUSIVE)
    pt[nz] = ptes
    dst.pt[nz] = np.where(present, ptes & ~_Y, ptes)
    frames = ptes >> PTE_SHIFT
    anon = present & (frames != 0)
    if anon.any():
        af = frames[anon]
        page_dup_rmap(m, af, dst, dst.start + nz[anon])
        dst.mm.rss += len(af)
    swp = ~present
    if swp.any():
        assert m.swap is not None  # swap PTEs exist only while swap is on
        m.swap.duplicate(frames[swp], dst.mm, src.mm)
        dst.mm.swapents += int(np.count_nonzero(swp))
        mmlist_add_after(m, dst.mm, src.mm)
