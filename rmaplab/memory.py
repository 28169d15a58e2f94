# SPDX-License-Identifier: GPL-2.0-only
"""The fault path (mm/memory.c, Linux 6.18), over ranges.

handle_mm_fault_range walks the range VMA by VMA; handle_pte_fault is the
dispatcher, as in the kernel: a swap PTE goes to do_swap_page, an empty
PTE to do_anonymous_page (the zero page on a read, a new page on a write),
a write to a write-protected PTE to do_wp_page, which reuses the page when
nothing else holds it (wp_page_reuse) and copies it otherwise
(wp_page_copy; the zero page is copied as a zeroed page). File-backed
faults (do_read_fault, do_cow_fault, do_shared_fault) will sit beside
do_anonymous_page when file mappings come. Every handler works on a
category of PTEs at once (an index array into one VMA's page table), so a
write of 1,000 pages is a handful of array operations, not 1,000
dispatches; swap PTEs, which need I/O and a frame each, go one at a time.

Frames: when a range needs more frames than are free, reclaim runs first
(vmscan.py), then the OOM killer (oom_kill.py), and then the prefix that
fits is done; the range goes on where it stopped. The new pages of one
pass are allocated together in address order, so the LRU and the frame
numbers come out as page-by-page faults would give them.

Invariants kept: a present anonymous PTE holds a reference on its frame and
adds one to its mapcount; the zero page is referenced by neither;
mm.rss counts present anonymous (non-zero) PTEs. Zapping and fork's copy
(pgtable.py) sit below this module, because VMA surgery and exit need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import Segv
from .mm_types import (
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_SHIFT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_WRITE,
    PTE_YOUNG,
    VM_LOCKED,
    VM_READ,
    VM_VOLATILE,
    VM_WRITE,
    VMA,
)
from .oom_kill import out_of_memory
from .page_alloc import PG_ANON_EXCLUSIVE, PG_DIRTY, PG_SWAPCACHE
from .rmap.core import (
    anon_vma_prepare,
    page_add_anon_rmap,
    page_add_new_anon_rmap,
    page_move_anon_rmap,
    page_remove_rmap,
)
from .swap import delete_from_swap_cache, folio_free_swap, lru_add, put_pages
from .swap_state import swapin_private_copy, swapin_to_cache
from .vmscan import try_to_free_pages
from .volatile import volatile_fault

if TYPE_CHECKING:
    from .mm_state import MMState
    from .mm_types import MM

_P, _W, _Y, _D, _S = PTE_PRESENT, PTE_WRITE, PTE_YOUNG, PTE_DIRTY, PTE_SWAP
FRESH = _P | _W | _Y | _D
_EMPTY = np.zeros(0, np.int64)


def access_ok(vma: VMA, write: bool) -> bool:
    """The inverse of do_user_addr_fault's access_error: vma allows the access."""
    return bool(vma.flags & (VM_WRITE if write else (VM_READ | VM_WRITE)))


def handle_mm_fault_range(m: MMState, mm: MM, start: int, end: int, write: bool,
                          value: int | None, values: list[int] | None) -> None:
    """Models mm/memory.c handle_mm_fault() over [start, end) of mm: a user
    load (write False, into values) or store (of value; None keeps the data,
    as populate does) of every page, in address order.

    Each VMA piece goes to handle_pte_fault. Raises Segv at the first page
    that is unmapped or not accessible; earlier pages stay done and, for a
    read, values holds what was read. Raises OomKill when the OOM killer
    picks the faulting task.
    """
    vpn = start
    while vpn < end:
        vma = mm.vma_lookup(vpn)
        if vma is None or not access_ok(vma, write):
            raise Segv(vpn)
        hi = min(end, vma.end)
        if vma.flags & VM_VOLATILE:
            # volatile ranges: the first fault on an empty entry drops
            # VM_VOLATILE and merges the VMA back; pages before it are
            # accessed as they are
            empty = np.flatnonzero(vma.pt[vpn - vma.start:hi - vma.start] == 0)
            if len(empty):
                if empty[0]:
                    hi = vpn + int(empty[0])
                else:
                    volatile_fault(m, vma)
                    continue
        handle_pte_fault(m, vma, vpn, hi, write, value, values)
        if vma.dead:  # cannot happen: the OOM killer never picks a task mid-range twice
            raise AssertionError("vma freed under a fault")
        vpn = hi


def handle_pte_fault(m: MMState, vma: VMA, lo: int, hi: int, write: bool,
                     value: int | None, values: list[int] | None) -> None:
    """Models mm/memory.c handle_pte_fault() over [lo, hi) of vma: the
    dispatcher. A swap PTE goes to do_swap_page (one page), and the access
    then goes on from that page as from a present one; the run of PTEs up
    to the next swap PTE is sorted by kind and each kind handed on at once
    (_read_faults, _write_faults)."""
    i0, i1 = lo - vma.start, hi - vma.start
    may_reclaim = True
    while i0 < i1:
        seg = vma.pt[i0:i1]
        swap = np.flatnonzero(seg & _S)
        if len(swap) and not swap[0]:
            do_swap_page(m, vma, vma.start + i0, write)
            may_reclaim = True
            continue  # mapped now: the access goes on as for a present page
        stop = i1 if not len(swap) else i0 + int(swap[0])
        if write:
            i0, reclaimed = _write_faults(m, vma, i0, stop, value, may_reclaim)
            # after a reclaim that did not free enough, the next pass goes to the OOM killer
            may_reclaim = not reclaimed
        else:
            _read_faults(m, vma, i0, stop, values)
            i0 = stop


def _read_faults(m: MMState, vma: VMA, i0: int, i1: int, values: list[int] | None) -> None:
    """Loads from vma.pt[i0:i1] (no swap PTE in it): empty PTEs go to
    do_anonymous_page (the zero page); then every page is read and made young."""
    seg = vma.pt[i0:i1]
    empty = np.flatnonzero(seg == 0)
    if len(empty):
        do_anonymous_page(m, vma, i0, empty, None, None)
    seg |= _Y
    if values is not None:
        values.extend(m.frames.data[seg >> PTE_SHIFT].tolist())


def _write_faults(m: MMState, vma: VMA, i0: int, i1: int, value: int | None,
                  may_reclaim: bool) -> tuple[int, bool]:
    """Stores to vma.pt[i0:i1] (no swap PTE in it, all writable by prot).

    Sorts the PTEs: empty ones go to do_anonymous_page, write-protected
    ones (a COW page, or the zero page) to do_wp_page, writable ones need
    no fault. The new pages all of them need are found first, in address
    order: if too few frames are free, reclaim runs (and this returns
    having done nothing: the caller comes back without reclaim), else the
    OOM killer, else the prefix that fits is done. Returns where to go on,
    and whether this pass only reclaimed.
    """
    ft = m.frames
    seg = vma.pt[i0:i1]
    frames = seg >> PTE_SHIFT
    present = (seg & _P) != 0
    zero = present & (frames == 0)
    wp = (present & ((seg & _W) == 0)) | zero  # write-protected: do_wp_page, the zero page too
    empty = seg == 0
    reuse = np.zeros(len(seg), bool)
    cow = wp & ~zero
    if cow.any():
        rule = m.rules.cow
        if rule == "exclusive":
            reuse[cow] = wp_can_reuse_anon_folio(m, frames[cow])
        elif rule == "swapcount":
            reuse[cow] = reuse_swap_page(m, frames[cow])
        else:
            reuse[cow] = can_share_swap_page(m, frames[cow])
    new = empty | (wp & ~reuse)  # a new page each: do_anonymous_page, wp_page_copy
    need = np.cumsum(new)
    total = int(need[-1]) if len(need) else 0
    end = i1
    if total > ft.nr_free:
        if may_reclaim:
            # the pages of this range are held (locked, in the kernel) while
            # reclaim runs, so it cannot take back what the fault works on
            m.pinned = frames[present & ~zero]
            try:
                try_to_free_pages(m, total - ft.nr_free)
            finally:
                m.pinned = None
            return i0, True
        k = int(np.searchsorted(need, ft.nr_free, side="right"))
        if k == 0:
            out_of_memory(m, vma.mm)
            return i0, False  # the victim's frames are free now; go again
        end = i0 + k
    n = end - i0
    _handle_writes(m, vma, i0, end, value, new[:n], empty[:n], wp[:n], reuse[:n])
    return end, False


def _handle_writes(m: MMState, vma: VMA, i0: int, i1: int, value: int | None,
                   new_mask: np.ndarray, empty: np.ndarray, wp: np.ndarray,
                   reuse: np.ndarray) -> None:
    """The write faults of [i0, i1), frames for them being free: one
    allocation for the new pages (new_mask), in address order, then each
    kind to its handler, then the stores themselves (young, dirty, data)."""
    seg = vma.pt[i0:i1]
    new = np.flatnonzero(new_mask)
    frames = _EMPTY
    if len(new):
        anon_vma_prepare(m, vma)
        frames = m.frames.alloc(len(new))  # before any old page is put: none is reused
    e_idx = np.flatnonzero(empty)
    if len(e_idx) < len(seg) and wp.any():
        w_idx = np.flatnonzero(wp)
        # the new pages that are not for empty PTEs are wp_page_copy's
        w_frames = frames if not len(e_idx) else frames[~empty[new]]
        do_wp_page(m, vma, i0, w_idx, reuse[w_idx], w_frames, value)
    if len(e_idx):
        e_frames = frames if len(e_idx) == len(new) else frames[empty[new]]
        do_anonymous_page(m, vma, i0, e_idx, e_frames, value)
    if len(new):
        # folio_add_new_anon_rmap and folio_add_lru_vma of both handlers, for
        # every new page at once and in address order, as page by page
        page_add_new_anon_rmap(m, frames, vma, vma.start + i0 + new)
        lru_add(m, frames)
    seg |= _W | _Y | _D
    if value is not None:
        m.frames.data[seg >> PTE_SHIFT] = value


def do_anonymous_page(m: MMState, vma: VMA, i0: int, idx: np.ndarray,
                      frames: np.ndarray | None, value: int | None) -> None:
    """Models mm/memory.c do_anonymous_page(): empty PTEs vma.pt[i0 + idx] get
    the shared zero page on a read (frames None), or on a write the new
    pages frames (zeroed; rmap and LRU are the caller's, for all new pages
    at once)."""
    seg = vma.pt[i0:]
    m.counters["pgfault"] += len(idx)
    if frames is None:
        seg[idx] = _P | _Y  # the zero page, frame 0
        return
    if value is None:  # populate: a fresh page is zeroed
        m.frames.data[frames] = 0
    seg[idx] = (frames << PTE_SHIFT) | FRESH
    vma.mm.rss += len(idx)


def do_wp_page(m: MMState, vma: VMA, i0: int, idx: np.ndarray, reuse: np.ndarray,
               frames: np.ndarray, value: int | None) -> None:
    """Models mm/memory.c do_wp_page(): write faults on the write-protected
    PTEs vma.pt[i0 + idx]; those reuse marks (wp_can_reuse_anon_folio said
    yes) go to wp_page_reuse, the others, and the zero page, to wp_page_copy
    with the new pages frames."""
    if not reuse.any():
        wp_page_copy(m, vma, i0, idx, frames, value)
        return
    if not reuse.all():
        wp_page_copy(m, vma, i0, idx[~reuse], frames, value)
    wp_page_reuse(m, vma, i0, idx[reuse])


def wp_can_reuse_anon_folio(m: MMState, frames: np.ndarray) -> np.ndarray:
    """Models mm/memory.c wp_can_reuse_anon_folio(): which of the COW pages
    frames may be written in place, nobody else holding them (refcount 1,
    or PG_anon_exclusive). A swap-cache page whose only other reference is
    the cache drops it (folio_free_swap) and is reused."""
    ft = m.frames
    ok = (ft.refcount[frames] == 1) | ((ft.flags[frames] & PG_ANON_EXCLUSIVE) != 0)
    if ok.all() or m.swap is None:
        return ok
    cand = np.flatnonzero(~ok & ((ft.flags[frames] & PG_SWAPCACHE) != 0)
                          & (ft.refcount[frames] == 2))
    for j in cand.tolist():
        f = int(frames[j])
        if folio_free_swap(m, f):
            ok[j] = ft.refcount[f] == 1
    return ok


def reuse_swap_page(m: MMState, frames: np.ndarray) -> np.ndarray:
    """Models reuse_swap_page() of Linux 2.6.34 (do_wp_page's test before
    PG_anon_exclusive): a page mapped once, with no swap PTE naming its
    slot, is reused; one in the swap cache leaves it and is dirty."""
    ft = m.frames
    sw = m.swap
    ok = ft.mapcount[frames] <= 1
    cached = ok & ((ft.flags[frames] & PG_SWAPCACHE) != 0)
    if sw is None or not cached.any():
        return ok
    for j in np.flatnonzero(cached).tolist():
        f = int(frames[j])
        if sw.swap_map[int(ft.private[f])]:
            ok[j] = False  # page_swapcount: another swap PTE still names it
            continue
        delete_from_swap_cache(m, f)
        ft.flags[f] |= PG_DIRTY
    return ok


def can_share_swap_page(m: MMState, frames: np.ndarray) -> np.ndarray:
    """Models can_share_swap_page() of Linux 2.6.0 to 2.6.9: reuse a page
    nobody else references (page_count 1), or one whose only other
    reference is the swap cache with no swap PTE naming its slot
    (exclusive_swap_page); that page stays in the swap cache."""
    ft = m.frames
    count = ft.refcount[frames]
    ok = count == 1
    sw = m.swap
    cand = (count == 2) & ((ft.flags[frames] & PG_SWAPCACHE) != 0)
    if sw is None or not cand.any():
        return ok
    for j in np.flatnonzero(cand).tolist():
        ok[j] = sw.swap_map[int(ft.private[int(frames[j])])] == 0
    return ok


def wp_page_copy(m: MMState, vma: VMA, i0: int, idx: np.ndarray, frames: np.ndarray,
                 value: int | None) -> None:
    """Models mm/memory.c wp_page_copy(): the write-protected PTEs
    vma.pt[i0 + idx] get the new pages frames, copies of what they mapped
    (zeroed for the zero page); each old page loses this mapping."""
    seg = vma.pt[i0:]
    old = seg[idx] >> PTE_SHIFT
    cow = old != 0
    ncow = int(np.count_nonzero(cow))
    if value is None:  # populate: a copy keeps the data
        m.frames.data[frames] = np.where(cow, m.frames.data[old], 0)
    if ncow:
        every = ncow == len(idx)
        cf = old if every else old[cow]
        page_remove_rmap(m, cf, vma, vma.start + i0 + (idx if every else idx[cow]))
        put_pages(m, cf)
        m.counters["cow"] += ncow
    seg[idx] = (frames << PTE_SHIFT) | FRESH
    vma.mm.rss += len(idx) - ncow  # the zero page was not counted
    m.counters["pgfault"] += len(idx)


def wp_page_reuse(m: MMState, vma: VMA, i0: int, idx: np.ndarray) -> None:
    """Models mm/memory.c wp_page_reuse(): the pages at vma.pt[i0 + idx] are
    written in place, made vma's own (folio_move_anon_rmap) if they were not
    exclusive yet."""
    seg = vma.pt[i0:]
    rf = seg[idx] >> PTE_SHIFT
    moving = (m.frames.flags[rf] & PG_ANON_EXCLUSIVE) == 0
    if moving.any():
        page_move_anon_rmap(m, rf[moving], vma, vma.start + i0 + idx[moving])
    seg[idx] |= _W | _Y | _D
    m.counters["cow_reuse"] += len(idx)
    m.counters["pgfault"] += len(idx)


def do_swap_page(m: MMState, vma: VMA, vpn: int, write: bool) -> None:
    """Models mm/memory.c do_swap_page(): map the page of the swap PTE at vpn,
    read into the swap cache if it is not there (swapin_to_cache), exclusive
    and writable at once for a write if the swap PTE said exclusive; a write
    to a page that is not exclusive then goes through do_wp_page."""
    i = vpn - vma.start
    pte = int(vma.pt[i])
    slot = pte >> PTE_SHIFT
    exclusive = bool(pte & PTE_SWP_EXCLUSIVE)
    frame = swapin_to_cache(m, slot, vma.mm)
    if frame < 0 or int(vma.pt[i]) != pte:  # our PTE holds the slot: cannot happen
        raise AssertionError("swap PTE changed under do_swap_page")
    ft = m.frames
    sw = m.swap
    assert sw is not None  # a swap PTE exists only while swap is on
    bits = PTE_PRESENT | PTE_YOUNG | (PTE_WRITE | PTE_DIRTY if write else 0)
    copied = swapin_private_copy(m, vma, i, frame, pte, bits, vma.mm)
    if copied < 0:
        raise AssertionError("swap PTE changed under do_swap_page")
    m.counters["pgfault"] += 1
    rules = m.rules
    locked = rules.swapin_free_locked and vma.flags & VM_LOCKED
    if copied:
        if sw.swap_map[slot] == 0 and (sw.full() or locked):
            delete_from_swap_cache(m, frame)
        return
    one = np.array([frame], np.int64)
    vpns = np.array([vpn], np.int64)
    ft.refcount[frame] += 1
    page_add_anon_rmap(m, one, vma, vpns, exclusive)
    new = (frame << PTE_SHIFT) | PTE_PRESENT | PTE_YOUNG
    if write and exclusive:
        new |= PTE_WRITE | PTE_DIRTY
    vma.pt[i] = new
    vma.mm.rss += 1
    vma.mm.swapents -= 1
    sw.swap_map[slot] -= 1
    if sw.swap_map[slot] == 0 and (sw.full() or locked or (
            rules.swapin_free_write and write and ft.refcount[frame] == 2)):
        # folio_free_swap: with its swap copy gone the page is dirty, read
        # fault or not (MADV_FREE then treats it as dirty)
        ft.flags[frame] |= PG_DIRTY
        delete_from_swap_cache(m, frame)


def early_cow(m: MMState, vma: VMA, idx: np.ndarray) -> None:
    """Private copies for the present pages at vma.pt[idx], taken now rather
    than at the next write: Hugh Dickins' mremap patch after anonmm (2004;
    docs/references.md), as anonmm cannot find a page shared with another mm
    at two addresses.
    The caller made sure enough frames are free. The PTEs keep their bits."""
    ft = m.frames
    seg = vma.pt[idx]
    old = seg >> PTE_SHIFT
    new = ft.alloc(len(idx))
    ft.data[new] = ft.data[old]
    vpns = vma.start + idx
    page_remove_rmap(m, old, vma, vpns)
    put_pages(m, old)
    vma.pt[idx] = (new << PTE_SHIFT) | (seg & ((1 << PTE_SHIFT) - 1))
    page_add_new_anon_rmap(m, new, vma, vpns)
    lru_add(m, new)
    m.counters["early_cow"] += len(idx)


def populate_range(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """populate_vma_page_range (mlock, mremap of a locked VMA): fault in every
    page, writing where the VMA is writable (breaking COW), reading otherwise."""
    if vma.flags & VM_WRITE:
        handle_pte_fault(m, vma, lo, hi, True, None, None)  # FOLL_WRITE: data kept
    else:
        handle_pte_fault(m, vma, lo, hi, False, None, None)
