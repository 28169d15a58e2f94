# SPDX-License-Identifier: GPL-2.0-only
"""Reclaim (mm/vmscan.c) and the madvise advices that feed it.

Until the swap issue lands this holds the part of reclaim that needs no
swap area: MADV_FREE's lazy free (a clean page mapped once is discarded by
MADV_PAGEOUT or reclaim, unless it was written again) and the LRU hooks.
Anonymous pages that are not lazily freed need a swap slot to be
reclaimed, so without a swap area reclaim frees nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .mm_types import PTE_DIRTY, PTE_PRESENT, PTE_SHIFT, VMA
from .page_alloc import PG_LAZYFREE
from .rmap.core import page_remove_rmap, put_pages

if TYPE_CHECKING:
    from .machine import Machine


def lru_add(m: Machine, frames: np.ndarray) -> None:
    """folio_add_lru: new pages start on the LRU (lists modelled with swap)."""


def lru_del(m: Machine, frames: np.ndarray) -> None:
    """The freed frames leave the LRU."""


def try_to_free_pages(m: Machine, pages: int) -> int:
    """Global reclaim of up to pages pages; returns how many were freed."""
    return 0


def _present_anon(vma: VMA, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i0 = lo - vma.start
    seg = vma.pt[i0:hi - vma.start]
    idx = np.flatnonzero((seg & PTE_PRESENT) != 0)
    frames = seg[idx] >> PTE_SHIFT
    keep = frames != 0
    return idx[keep] + i0, frames[keep], seg


def madvise_free(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """madvise_free_pte_range: clean exclusively mapped pages become lazily
    freeable (PTE dirty bit cleared, PG_lazyfree); shared ones are left."""
    idx, frames, _ = _present_anon(vma, lo, hi)
    if not len(idx):
        return
    ft = m.frames
    own = ft.mapcount[frames] == 1
    idx, frames = idx[own], frames[own]
    vma.pt[idx] &= ~np.int64(PTE_DIRTY)
    ft.flags[frames] |= PG_LAZYFREE


def madvise_cold(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """madvise_cold: deactivate (no visible effect without swap)."""


def madvise_willneed(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """madvise_willneed: swap-in readahead (nothing to read without swap)."""


def madvise_pageout(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """madvise_pageout: reclaim the exclusively mapped pages of the range now.

    Without swap only lazily freed pages that stayed clean can go.
    """
    idx, frames, _ = _present_anon(vma, lo, hi)
    if not len(idx):
        return
    ft = m.frames
    ptes = vma.pt[idx]
    go = ((ft.mapcount[frames] == 1) & ((ft.flags[frames] & PG_LAZYFREE) != 0)
          & ((ptes & PTE_DIRTY) == 0))
    if not go.any():
        return
    idx, frames = idx[go], frames[go]
    m.counters["pgscan"] += len(frames)
    page_remove_rmap(m, frames, vma, vma.start + idx)
    vma.pt[idx] = 0
    vma.mm.rss -= len(frames)
    put_pages(m, frames)
    m.counters["lazyfree_discard"] += len(frames)
    m.counters["pgsteal"] += len(frames)
