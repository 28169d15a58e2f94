# SPDX-License-Identifier: GPL-2.0-only
"""The LRU, page release, and the swap cache updates every layer needs.

What zap, fork, rmap and reclaim call without bringing anything in from
swap, gathered below them all:
  - the LRU lists (mm/swap.c folio_add_lru; the model keeps one age
    sequence number per frame, lower is older, and new pages start inactive);
  - folio_put for each frame (mm/swap.c): the last reference frees it;
  - the swap cache (mm/swap_state.c add_to_swap_cache, delete_from_swap_cache,
    free_swap_cache): a page in it has PG_swapcache, page->private = its
    slot, and one reference held by the cache;
  - freeing swap entries (mm/swapfile.c free_swap_and_cache, folio_free_swap);
  - mmlist, the mms that may hold swap entries (Hugh Dickins' mmlist rework,
    October 2004): try_to_unmap_one puts an mm at the front (after init_mm),
    copy_page_range puts a child right after its parent, mmput takes it off
    after exit_mmap, drain_mmlist empties it once no swap is in use.
Reading a page in from swap needs a free frame, and so reclaim and the OOM
killer: that half is in swap_state.py, above them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .page_alloc import PG_ACTIVE, PG_DIRTY, PG_LRU, PG_SWAPCACHE

if TYPE_CHECKING:
    from .mm_state import MMState
    from .mm_types import MM


# -- the LRU -----------------------------------------------------------------------

def lru_add(m: MMState, frames: np.ndarray) -> None:
    """folio_add_lru: new pages join the inactive list as its youngest."""
    ft = m.frames
    n = len(frames)
    ft.flags[frames] = (ft.flags[frames] | PG_LRU) & ~np.uint32(PG_ACTIVE)
    ft.lru_seq[frames] = np.arange(m.lru_clock, m.lru_clock + n)
    m.lru_clock += n


def lru_del(m: MMState, frames: np.ndarray) -> None:
    """lruvec_del_folio: the pages leave their LRU list."""
    ft = m.frames
    ft.flags[frames] &= ~np.uint32(PG_LRU | PG_ACTIVE)


def put_pages(m: MMState, frames: np.ndarray) -> None:
    """folio_put for each frame: drop one reference, free those reaching zero."""
    if not len(frames):
        return
    ft = m.frames
    ft.refcount[frames] -= 1
    dead = frames[ft.refcount[frames] == 0]
    if len(dead):
        m.rmap.page_freed(dead)
        lru_del(m, dead)
        ft.free(dead)


# -- the swap cache ------------------------------------------------------------------

def add_to_swap_cache(m: MMState, frame: int, slot: int) -> None:
    """add_to_swap_cache: the cache holds frame for slot (one reference)."""
    sw = m.swap
    assert sw is not None  # a slot exists only while swap is on
    ft = m.frames
    sw.has_cache[slot] = True
    sw.cache[slot] = frame
    ft.flags[frame] |= PG_SWAPCACHE
    ft.private[frame] = slot
    ft.refcount[frame] += 1


def delete_from_swap_cache(m: MMState, frame: int) -> None:
    """__delete_from_swap_cache + put: the slot loses its cache reference."""
    sw = m.swap
    assert sw is not None  # a swap cache page exists only while swap is on
    ft = m.frames
    slot = int(ft.private[frame])
    sw.has_cache[slot] = False
    sw.cache[slot] = -1
    sw.release_if_free(slot)
    ft.flags[frame] &= ~np.uint32(PG_SWAPCACHE)
    ft.private[frame] = -1
    put_pages(m, np.array([frame], np.int64))


def folio_free_swap(m: MMState, frame: int) -> bool:
    """folio_free_swap: drop the swap cache of a page no swap PTE names."""
    sw = m.swap
    assert sw is not None  # the page is in the swap cache
    slot = int(m.frames.private[frame])
    if slot < 0 or sw.swap_map[slot] != 0:
        return False
    m.frames.flags[frame] |= PG_DIRTY  # the only copy is in memory now
    delete_from_swap_cache(m, frame)
    return True


def free_swap_and_cache(m: MMState, slots: np.ndarray) -> None:
    """free_swap_and_cache for zapped swap PTEs: a slot left only to the
    cache frees its page too when nothing maps that page."""
    sw = m.swap
    assert sw is not None  # swap PTEs exist only while swap is on
    for slot in slots.tolist():
        sw.swap_map[slot] -= 1
        if sw.swap_map[slot] == 0:
            f = int(sw.cache[slot])
            if f >= 0 and m.frames.mapcount[f] == 0:
                delete_from_swap_cache(m, f)
            else:
                sw.release_if_free(slot)


def free_swap_cache(m: MMState, frames: np.ndarray) -> None:
    """free_swap_cache, as free_pages_and_swap_cache calls it on zapped pages:
    a swap-cache page that nothing maps any more, and that no swap PTE
    names, gives its slot back (so a page read back from swap and then
    unmapped does not keep swap space)."""
    ft = m.frames
    cached = frames[(ft.flags[frames] & PG_SWAPCACHE) != 0]
    if not len(cached) or m.swap is None:
        return
    for f in np.unique(cached[ft.mapcount[cached] == 0]).tolist():
        folio_free_swap(m, f)


# -- mmlist -----------------------------------------------------------------------------

def mmlist_add_front(m: MMState, mm: MM) -> None:
    """try_to_unmap_one: list_add(&mm->mmlist, &init_mm.mmlist)."""
    if not mm.on_mmlist:
        m.mmlist.insert(0, mm)
        mm.on_mmlist = True


def mmlist_add_after(m: MMState, mm: MM, parent: MM) -> None:
    """copy_page_range: list_add(&dst->mmlist, &src->mmlist)."""
    if mm.on_mmlist:
        return
    if parent.on_mmlist:
        m.mmlist.insert(m.mmlist.index(parent) + 1, mm)
    else:  # cannot happen (the parent has the entry): keep the model going
        m.mmlist.insert(0, mm)
    mm.on_mmlist = True


def mmlist_del(m: MMState, mm: MM) -> None:
    """mmput: list_del(&mm->mmlist), once exit_mmap is done."""
    if mm.on_mmlist:
        m.mmlist.remove(mm)
        mm.on_mmlist = False


def drain_mmlist(m: MMState) -> None:
    """drain_mmlist: with no swap in use, no mm needs to be on mmlist."""
    if m.swap is not None and m.swap.inuse:
        return
    for mm in m.mmlist:
        mm.on_mmlist = False
    m.mmlist.clear()
