# SPDX-License-Identifier: GPL-2.0-only
"""Reading pages in from swap (mm/swap_state.c, and swapoff's unuse_pte).

read_swap_cache_async (swapin_to_cache) finds the slot's page in the swap
cache or reads it into a new one, which may take reclaim and the OOM killer
(oom_kill.get_free_frame): so this half of swap_state.c sits above them,
while the cache updates themselves (add_to_swap_cache,
delete_from_swap_cache) are in swap.py, below everything that frees pages.
The fault that maps a swap PTE, do_swap_page, is in memory.py. A scheme
that could not find the page at the faulting address (anonmm, when another
mm maps it elsewhere) has a private copy mapped instead
(swapin_private_copy), there and in swapoff's unuse_pte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .mm_types import PTE_PRESENT, PTE_SHIFT, PTE_SWAP, PTE_SWP_EXCLUSIVE, VMA
from .oom_kill import get_free_frame
from .page_alloc import PG_ANON
from .rmap.core import page_add_anon_rmap, page_add_new_anon_rmap
from .swap import add_to_swap_cache, delete_from_swap_cache, lru_add

if TYPE_CHECKING:
    from .mm_state import MMState
    from .mm_types import MM


def swapin_to_cache(m: MMState, slot: int, mm: MM | None) -> int:
    """read_swap_cache_async: the slot's page, read into the cache if needed;
    -1 if the slot was freed while a frame was being found."""
    sw = m.swap
    assert sw is not None  # a slot exists only while swap is on
    f = int(sw.cache[slot])
    if f >= 0:
        return f
    f = get_free_frame(m, mm)
    if sw.swap_map[slot] == 0 and not sw.has_cache[slot]:
        # the OOM killer, finding us a frame, took the last holder of the slot
        m.frames.free(np.array([f], np.int64))
        return -1
    ft = m.frames
    ft.mapcount[f] = 0
    ft.refcount[f] = 0
    ft.flags[f] = PG_ANON
    ft.data[f] = sw.data[slot]
    add_to_swap_cache(m, f, slot)
    lru_add(m, np.array([f], np.int64))
    m.counters["pswpin"] += 1
    return f


def unuse_pte(m: MMState, vma: VMA, i: int, frame: int) -> None:
    """unuse_pte (swapoff): the swap PTE at index i now maps frame."""
    ft = m.frames
    sw = m.swap
    assert sw is not None  # swapoff runs with the area still set
    pte = int(vma.pt[i])
    slot = pte >> PTE_SHIFT
    if not pte & PTE_SWAP or int(sw.cache[slot]) != frame:
        return  # no longer this slot's entry (its mm went meanwhile)
    exclusive = bool(pte & PTE_SWP_EXCLUSIVE)
    if swapin_private_copy(m, vma, i, frame, pte, PTE_PRESENT, None):
        return  # a private copy maps it (anonmm), or its mm went meanwhile
    ft.refcount[frame] += 1
    page_add_anon_rmap(m, np.array([frame], np.int64), vma,
                       np.array([vma.start + i], np.int64), exclusive)
    vma.pt[i] = (frame << PTE_SHIFT) | PTE_PRESENT
    vma.mm.rss += 1
    vma.mm.swapents -= 1
    sw.swap_map[slot] -= 1


def swapin_private_copy(m: MMState, vma: VMA, i: int, frame: int, pte: int, bits: int,
                        mm: MM | None) -> int:
    """Map a private copy of the swap cache page frame at index i of vma, if
    the rmap scheme could not find frame there (anonmm: another mm maps it at
    another address; Hugh Dickins' mremap patch after anonmm, 2004,
    in docs/references.md). Returns 1 when a copy now maps the
    PTE (the slot lost its reference), 0 when no copy is needed, -1 when the
    PTE changed while a frame was found (its mm was killed). The new frame
    comes as any fault's does (reclaim, then the OOM killer, sparing mm's
    task unless it is the victim, as get_free_frame says)."""
    one = np.array([frame], np.int64)
    vpns = np.array([vma.start + i], np.int64)
    if not m.rmap.needs_private_copy(one, vma, vpns, False)[0]:
        return 0
    prev = m.pinned
    m.pinned = one  # reclaim must not take the page we copy
    try:
        g = get_free_frame(m, mm)
    finally:
        m.pinned = prev
    ft = m.frames
    if vma.dead or int(vma.pt[i]) != pte or \
            not m.rmap.needs_private_copy(one, vma, vpns, False)[0]:
        ft.free(np.array([g], np.int64))
        return -1 if vma.dead or int(vma.pt[i]) != pte else 0
    new = np.array([g], np.int64)
    ft.data[g] = ft.data[frame]
    vma.pt[i] = (g << PTE_SHIFT) | bits
    page_add_new_anon_rmap(m, new, vma, vpns)
    lru_add(m, new)
    vma.mm.rss += 1
    vma.mm.swapents -= 1
    sw = m.swap
    assert sw is not None
    sw.swap_map[pte >> PTE_SHIFT] -= 1
    m.counters["early_cow"] += 1
    return 1


__all__ = [  # the cache updates and get_free_frame are re-exported from below
    "add_to_swap_cache",
    "delete_from_swap_cache",
    "get_free_frame",
    "swapin_private_copy",
    "swapin_to_cache",
    "unuse_pte",
]
