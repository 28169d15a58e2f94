# SPDX-License-Identifier: GPL-2.0-only
"""Reclaim (mm/vmscan.c) and the madvise advices that feed it (mm/madvise.c).

The LRU: every anonymous page (mapped, or in the swap cache) is on it,
active or inactive, aged by a sequence number (lower is older); new pages
start inactive. Global reclaim (try_to_free_pages) deactivates the active
list when the inactive one is shorter, then scans inactive pages oldest
first through shrink_folio_list:

  mapped in a VM_LOCKED VMA (mlocked)    -> passed over, not even counted
                                            (the kernel's unevictable list)
  page_referenced (a charged rmap walk)  -> referenced: activate, keep
  not in the swap cache and swap-backed  -> add_to_swap (no slot: keep)
  try_to_unmap (a charged rmap walk)     -> TTU.FAIL (VM_LOCKED): keep
                                            TTU.AGAIN (still mapped): keep
  dirty                                  -> pageout: written to the slot
  unmapped, only the cache holds it      -> freed (pgsteal)

Volatile ranges (volatile.py): a page young in a VM_VOLATILE VMA is not
activated; try_to_unmap discards it (TTU.DISCARD, no writeout) when every
VMA the RFC's anon_vma walk meets is volatile.

A lazily freed page (MADV_FREE) that stayed clean is discarded without a
slot; one written again becomes swap-backed again and stays this round.
MADV_FREE marks a clean page even when other processes map it too (their
dirty PTEs then keep it); a page in the swap cache or PG_dirty only when
this process alone maps it.
MADV_PAGEOUT runs the same list over the range's pages that only one
process maps, ignoring references; MADV_COLD deactivates them.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

from .mm_types import (
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_SHIFT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_YOUNG,
    VM_LOCKED,
    VM_VOLATILE,
    VMA,
)
from .page_alloc import PG_ACTIVE, PG_ANON_EXCLUSIVE, PG_DIRTY, PG_LAZYFREE, PG_LRU, PG_SWAPCACHE
from .rmap.core import RmapWalkControl, find_mappings, page_referenced, rmap_walk
from .swap import (
    add_to_swap_cache,
    delete_from_swap_cache,
    folio_free_swap,
    free_swap_and_cache,
    mmlist_add_front,
    put_pages,
)
from .volatile import page_referenced_volatile, rfc_is_volatile

if TYPE_CHECKING:
    from .mm_state import MMState


class TTU(enum.Enum):
    """try_to_unmap's outcome (SWAP_SUCCESS/AGAIN/FAIL of Rik van Riel's 2002 pte_chain rmap)."""

    SUCCESS = 0
    AGAIN = 1
    FAIL = 2
    DISCARD = 3  # volatile ranges (RFC v3, 2012): a volatile page dropped without writeout


# -- the LRU -----------------------------------------------------------------------

def _touch(m: MMState, frame: int, active: bool) -> None:
    ft = m.frames
    if active:
        ft.flags[frame] |= PG_ACTIVE
    else:
        ft.flags[frame] &= ~np.uint32(PG_ACTIVE)
    ft.lru_seq[frame] = m.lru_clock
    m.lru_clock += 1


def _activate_locked(m: MMState, frame: int) -> None:
    """shrink_folio_list's activate_locked: a page reclaim keeps goes to the
    active list, and, being no candidate for swapping now, gives its swap
    slot back when swap is more than half full (folio_free_swap: only if no
    swap PTE names the slot). 6.18 frees it for an mlocked page too; the
    model never gets here with one (cull_mlocked passes them over). Kernels
    before 2.6.28 kept the slot (the era's rules.activate_frees_swap)."""
    if (m.frames.flags[frame] & PG_SWAPCACHE and m.swap is not None
            and m.rules.activate_frees_swap and m.swap.full()):
        folio_free_swap(m, frame)
    _touch(m, frame, True)


def _lru_list(m: MMState, active: bool) -> np.ndarray:
    """The frames of one LRU list, oldest first. Cost: O(frames log frames)."""
    ft = m.frames
    n = ft.next_unused
    fl = ft.flags[:n]
    on = (fl & PG_LRU) != 0
    on &= ((fl & PG_ACTIVE) != 0) if active else ((fl & PG_ACTIVE) == 0)
    frames = np.flatnonzero(on)
    return frames[np.argsort(ft.lru_seq[frames], kind="stable")]


# -- try_to_unmap -------------------------------------------------------------------

def try_to_unmap(m: MMState, frame: int, discard: list[VMA] | None = None) -> TTU:
    """try_to_unmap: replace every PTE of frame by its swap entry (or drop it,
    for a clean lazily freed page). Stops at a VM_LOCKED VMA (TTU.FAIL).
    discard: the VMAs of the volatile ranges RFC's walk, when it found the
    page volatile (volatile.rfc_is_volatile)."""
    ft = m.frames
    state = {"ret": TTU.SUCCESS}
    lazy = bool(ft.flags[frame] & PG_LAZYFREE) and not ft.flags[frame] & PG_SWAPCACHE
    placed: list[tuple[VMA, int]] = []  # swap entries this walk installed (volatile ranges)

    def one(f: int, vma: VMA, vpn: int) -> bool:
        if vma.flags & VM_LOCKED:
            state["ret"] = TTU.FAIL
            return False
        i = vpn - vma.start
        pte = int(vma.pt[i])
        if pte & PTE_DIRTY:
            ft.flags[f] |= PG_DIRTY
        if lazy:
            if ft.flags[f] & PG_DIRTY:
                # written again after MADV_FREE: swap-backed again, kept
                ft.flags[f] &= ~np.uint32(PG_LAZYFREE)
                state["ret"] = TTU.FAIL
                return False
            vma.pt[i] = 0
        else:
            slot = int(ft.private[f])
            swp = (slot << PTE_SHIFT) | PTE_SWAP
            if ft.flags[f] & PG_ANON_EXCLUSIVE:
                swp |= PTE_SWP_EXCLUSIVE
            vma.pt[i] = swp
            placed.append((vma, i))
            assert m.swap is not None  # the page is in the swap cache
            m.swap.swap_map[slot] += 1
            vma.mm.swapents += 1
            mmlist_add_front(m, vma.mm)
        vma.mm.rss -= 1
        ft.mapcount[f] -= 1
        m.rmap.page_remove(np.array([f], np.int64), vma, np.array([vpn], np.int64))
        put_pages(m, np.array([f], np.int64))
        return True

    def done(f: int) -> bool:
        return ft.mapcount[f] == 0 or ft.refcount[f] == 0

    if ft.mapcount[frame] > 0:
        rmap_walk(m, frame, RmapWalkControl(one, done))
    if state["ret"] is TTU.SUCCESS and ft.refcount[frame] and ft.mapcount[frame] > 0:
        return TTU.AGAIN
    if state["ret"] is TTU.SUCCESS and lazy:
        return TTU.DISCARD
    if state["ret"] is TTU.SUCCESS and placed and ft.mapcount[frame] == 0 and discard is not None:
        # volatile ranges: try_to_zap_one over the whole list empties every PTE that
        # holds the page's swap entry, older ones and those of VMAs the first loop
        # never met included; the page is clean: it goes with no writeout
        assert m.swap is not None  # placed holds swap entries
        slot = int(ft.private[frame])
        index = int(ft.index[frame])
        zap = {(id(v), i): (v, i) for v, i in placed}
        for v in discard:
            i = index - v.pgoff
            if not v.dead and int(v.pt[i]) & PTE_SWAP and int(v.pt[i]) >> PTE_SHIFT == slot:
                zap[(id(v), i)] = (v, i)
        for v, i in zap.values():
            v.pt[i] = 0
            v.mm.swapents -= 1
            m.swap.swap_map[slot] -= 1
        ft.flags[frame] &= ~np.uint32(PG_DIRTY)
        return TTU.DISCARD
    if ft.refcount[frame] and ft.flags[frame] & PG_ANON_EXCLUSIVE and ft.mapcount[frame] == 0:
        ft.flags[frame] &= ~np.uint32(PG_ANON_EXCLUSIVE)  # moved into the swap PTEs
    return state["ret"]


def _discard_noswap(m: MMState, frame: int) -> int:
    """Config.volatile_noswap, the RFC's stated aim: a page the RFC's walk
    finds volatile is dropped with no swap entry at all."""
    for vma, vpn in find_mappings(m, frame):
        vma.pt[vpn - vma.start] = 0
        vma.mm.rss -= 1
        m.frames.mapcount[frame] -= 1
        m.rmap.page_remove(np.array([frame], np.int64), vma, np.array([vpn], np.int64))
        put_pages(m, np.array([frame], np.int64))
    m.counters["pgvolatile"] += 1
    m.counters["pgsteal"] += 1
    return 1


# -- shrink_folio_list ------------------------------------------------------------

def any_volatile(m: MMState) -> bool:
    """Whether some VMA is VM_VOLATILE (only then is the per-page look worth it)."""
    return any(v.flags & VM_VOLATILE for t in m.tasks.values() if t.mm is not None
               for v in t.mm.vmas)


def shrink_page_list(m: MMState, frames: list[int], ignore_references: bool,
                     cull_mlocked: bool = False, volatile_scan: bool | None = None) -> int:
    """shrink_folio_list: try to free each page in turn; returns pages freed.

    cull_mlocked: pass over pages some VM_LOCKED VMA maps, as the kernel
    does by keeping mlocked folios on the unevictable list, out of reach
    (never scanned, never given a slot, never partly unmapped). Callers
    whose pages cannot be mlocked (MADV_PAGEOUT's, mapped once in an
    unlocked VMA) leave it off.
    """
    ft = m.frames
    c = m.counters
    freed = 0
    if volatile_scan is None:
        volatile_scan = any_volatile(m)
    for f in frames:
        if ft.refcount[f] == 0 or not ft.flags[f] & PG_LRU:
            continue  # freed or taken off the LRU by an earlier step
        if cull_mlocked and ft.mapcount[f] > 0 and _mlocked(m, f):
            continue
        c["pgscan"] += 1
        # volatile ranges: a young PTE in a volatile VMA means reclaim, not activation
        young_volatile = volatile_scan and ft.mapcount[f] > 0 and page_referenced_volatile(m, f)
        if (not ignore_references and ft.mapcount[f] > 0 and page_referenced(m, f)
                and not young_volatile):
            _activate_locked(m, f)
            continue
        # the RFC's is_volatile (uncharged: its walk is try_to_unmap's own)
        discard = rfc_is_volatile(m, f) if volatile_scan and ft.mapcount[f] > 0 else None
        lazy = bool(ft.flags[f] & PG_LAZYFREE)
        if discard is not None and m.config.volatile_noswap and not ft.flags[f] & PG_SWAPCACHE:
            freed += _discard_noswap(m, f)
            continue
        if not lazy and not ft.flags[f] & PG_SWAPCACHE:
            if m.swap is None:
                _activate_locked(m, f)  # nowhere to put an anonymous page
                continue
            slot = m.swap.alloc_slot()
            if slot < 0:
                _activate_locked(m, f)
                continue
            add_to_swap_cache(m, f, slot)
            ft.flags[f] |= PG_DIRTY
        if ft.mapcount[f] > 0:
            ret = try_to_unmap(m, f, discard)
            if ret is TTU.FAIL:
                if ft.refcount[f]:
                    _activate_locked(m, f)
                continue
            if ret is TTU.AGAIN:
                continue
            if ret is TTU.DISCARD:
                c["pgsteal"] += 1
                freed += 1
                if ft.flags[f] & PG_SWAPCACHE:  # a volatile page: drop its slot too
                    c["pgvolatile"] += 1
                    delete_from_swap_cache(m, f)
                else:
                    c["lazyfree_discard"] += 1
                continue
        if ft.refcount[f] == 0:
            freed += 1
            c["pgsteal"] += 1
            continue
        if ft.flags[f] & PG_SWAPCACHE:
            if ft.flags[f] & PG_DIRTY:
                slot = int(ft.private[f])
                assert m.swap is not None  # the page is in the swap cache
                m.swap.data[slot] = ft.data[f]  # pageout: the write completes at once
                ft.flags[f] &= ~np.uint32(PG_DIRTY)
                c["pswpout"] += 1
            if ft.mapcount[f] == 0 and ft.refcount[f] == 1:
                delete_from_swap_cache(m, f)
                freed += 1
                c["pgsteal"] += 1
    return freed


def _can_reclaim_anon(m: MMState) -> bool:
    """can_reclaim_anon_pages: a free swap slot exists (get_nr_swap_pages)."""
    sw = m.swap
    return sw is not None and sw.writeok and sw.inuse < sw.nslots


def try_to_free_pages(m: MMState, pages: int) -> int:
    """Global reclaim of up to pages pages (the `reclaim` op, and direct
    reclaim before the OOM killer). Two passes: the second sees the pages the
    first found referenced (their young bits are clear by then)."""
    freed = 0
    # looking for mlocked pages costs a walk per page: only when some VMA is
    # locked, and only in kernels with the unevictable list (2.6.28 on);
    # before it, reclaim met them and try_to_unmap failed on VM_LOCKED
    any_locked = m.rules.cull_mlocked and any(
        v.flags & VM_LOCKED for t in m.tasks.values() if t.mm is not None for v in t.mm.vmas)
    any_vol = any_volatile(m)
    ft = m.frames

    def lru(active: bool, anon_ok: bool) -> np.ndarray:
        frames = _lru_list(m, active)
        if anon_ok:
            return frames
        # get_scan_count's SCAN_FILE: with no free swap slot the anon lists
        # are neither scanned nor aged; lazily freed pages, which the kernel
        # keeps on the file lists, still are
        return frames[(ft.flags[frames] & PG_LAZYFREE) != 0]

    for _ in range(2):
        anon_ok = _can_reclaim_anon(m) or (any_vol and m.config.volatile_noswap)
        inactive = lru(False, anon_ok)
        active = lru(True, anon_ok)
        if len(inactive) < len(active):
            # shrink_active_list: anonymous pages are deactivated regardless
            for f in active[: len(active) - len(inactive) + 1].tolist():
                _touch(m, f, False)
            inactive = lru(False, anon_ok)
        if m.pinned is not None and len(m.pinned):
            inactive = inactive[~np.isin(inactive, m.pinned)]
        for f in inactive.tolist():
            if freed >= pages:
                return freed
            freed += shrink_page_list(m, [f], False, cull_mlocked=any_locked,
                                      volatile_scan=any_vol)
        if freed >= pages:
            break
    return freed


# -- madvise ------------------------------------------------------------------------

def _exclusive_anon(m: MMState, vma: VMA, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Indexes (in vma) and frames of present anonymous pages mapped once."""
    i0 = lo - vma.start
    seg = vma.pt[i0:hi - vma.start]
    idx = np.flatnonzero((seg & PTE_PRESENT) != 0)
    frames = seg[idx] >> PTE_SHIFT
    keep = frames != 0
    idx, frames = idx[keep], frames[keep]
    own = m.frames.mapcount[frames] == 1
    return idx[own] + i0, frames[own]


def madvise_free(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """madvise_free_pte_range: swap entries are freed and emptied; present
    pages are cleaned in this mm's PTEs and marked lazily freeable.

    Only a page that is in the swap cache or PG_dirty must be mapped by this
    process alone (its swap copy is dropped, its dirt forgotten); a clean
    page that others map too is marked as well (6.18 does; their dirty PTEs
    make try_to_unmap keep it). folio_mark_lazyfree leaves an mlocked
    (unevictable) page alone, though this mm's PTE bits are cleared anyway.
    """
    i0 = lo - vma.start
    seg = vma.pt[i0:hi - vma.start]
    sw = np.flatnonzero(seg & PTE_SWAP)
    if len(sw):
        slots = seg[sw] >> PTE_SHIFT
        seg[sw] = 0
        vma.mm.swapents -= len(sw)
        free_swap_and_cache(m, slots)
    idx = np.flatnonzero((seg & PTE_PRESENT) != 0)
    frames = seg[idx] >> PTE_SHIFT
    keep = frames != 0  # the zero page is not a normal folio
    idx, frames = idx[keep] + i0, frames[keep]
    ft = m.frames
    for i, f in zip(idx.tolist(), frames.tolist()):
        if ft.flags[f] & (PG_SWAPCACHE | PG_DIRTY):
            if ft.mapcount[f] != 1:
                continue
            if ft.flags[f] & PG_SWAPCACHE and not folio_free_swap(m, f):
                continue
            ft.flags[f] &= ~np.uint32(PG_DIRTY)
        vma.pt[i] &= ~np.int64(PTE_DIRTY | PTE_YOUNG)
        if ft.mapcount[f] > 1 and _mlocked(m, f):
            continue
        ft.flags[f] |= PG_LAZYFREE
        _touch(m, f, False)


def _mlocked(m: MMState, frame: int) -> bool:
    """PG_mlocked, which the model does not keep: some VM_LOCKED VMA maps the
    page. Found by an uncharged walk (the kernel reads a flag)."""
    hit = [False]

    def one(f: int, vma: VMA, vpn: int) -> bool:
        hit[0] = bool(vma.flags & VM_LOCKED)
        return not hit[0]

    rmap_walk(m, frame, RmapWalkControl(one), charge=False)
    return hit[0]


def madvise_cold(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """madvise_cold: pages mapped once get old PTEs and go to the inactive list."""
    idx, frames = _exclusive_anon(m, vma, lo, hi)
    vma.pt[idx] &= ~np.int64(PTE_YOUNG)
    for f in frames.tolist():
        _touch(m, f, False)


def madvise_pageout(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """madvise_pageout: reclaim now the pages only this process maps, in
    address order, without looking at references (reclaim_pages)."""
    idx, frames = _exclusive_anon(m, vma, lo, hi)
    vma.pt[idx] &= ~np.int64(PTE_YOUNG)
    shrink_page_list(m, frames.tolist(), True)
