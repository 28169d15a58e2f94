# SPDX-License-Identifier: GPL-2.0-only
"""The fault path, zapping and fork's page-table copy (mm/memory.c, 6.18).

handle_mm_fault reads as the kernel's dispatcher: an empty PTE goes to
do_anonymous_page (the zero page on a read, a new page on a write), a swap
PTE to do_swap_page, a write to a write-protected PTE to do_wp_page (copy,
or reuse when the page is exclusive). Every function works on a whole range
of one VMA at once: the categories of its PTEs are computed as numpy masks
and each category is handled in one step, so a write of 1,000 pages is a
handful of array operations, not 1,000 dispatches.

Frames: when a range needs more frames than are free, the prefix that fits
is done, reclaim runs, and only then the OOM killer (oom.py); the range then
goes on where it stopped.

Invariants kept: a present anonymous PTE holds a reference on its frame and
adds one to its mapcount; the zero page is referenced by neither;
mm.rss counts present anonymous (non-zero) PTEs.
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


def access_ok(vma: VMA, write: bool) -> bool:
    return bool(vma.flags & (VM_WRITE if write else (VM_READ | VM_WRITE)))


def handle_mm_fault_range(m: MMState, mm: MM, start: int, end: int, write: bool,
                          value: int, values: list[int] | None) -> None:
    """Access [start, end) in address order as a user load or store would.

    Raises Segv at the first page that is unmapped or not accessible;
    earlier pages stay done and, for a read, values holds what was read.
    """
    vpn = start
    while vpn < end:
        vma = mm.vma_lookup(vpn)
        if vma is None or not access_ok(vma, write):
            raise Segv(vpn)
        hi = min(end, vma.end)
        if vma.flags & VM_VOLATILE:
            # seed 003: the first fault on an empty entry drops VM_VOLATILE
            # and merges the VMA back; pages before it are accessed as they are
            empty = np.flatnonzero(vma.pt[vpn - vma.start:hi - vma.start] == 0)
            if len(empty):
                if empty[0]:
                    hi = vpn + int(empty[0])
                else:
                    volatile_fault(m, vma)
                    continue
        if write:
            write_range(m, vma, vpn, hi, value)
        else:
            read_range(m, vma, vpn, hi, values)
        if vma.dead:  # cannot happen: the OOM killer never picks a task mid-range twice
            raise AssertionError("vma freed under a fault")
        vpn = hi


def read_range(m: MMState, vma: VMA, lo: int, hi: int, values: list[int] | None) -> None:
    """Loads: empty PTEs get the zero page (do_anonymous_page), swap PTEs are
    swapped in (do_swap_page), present ones are read and made young."""
    i0, i1 = lo - vma.start, hi - vma.start
    while i0 < i1:
        seg = vma.pt[i0:i1]
        swap = np.flatnonzero(seg & _S)
        stop = i1 if not len(swap) else i0 + int(swap[0])
        if stop > i0:
            seg = vma.pt[i0:stop]
            empty = seg == 0
            n_empty = int(np.count_nonzero(empty))
            if n_empty:
                m.counters["pgfault"] += n_empty
                seg[empty] = _P | _Y  # the zero page, frame 0
            seg |= _Y
            if values is not None:
                values.extend(m.frames.data[seg >> PTE_SHIFT].tolist())
            i0 = stop
        if i0 < i1:
            do_swap_page(m, vma, vma.start + i0, write=False)
            if values is not None:
                values.append(int(m.frames.data[int(vma.pt[i0]) >> PTE_SHIFT]))
            vma.pt[i0] |= _Y
            i0 += 1


def write_range(m: MMState, vma: VMA, lo: int, hi: int, value: int | None) -> None:
    """Stores of value to [lo, hi) of vma (all pages writable by prot);
    value None is a write fault that keeps the data (populate)."""
    i0, i1 = lo - vma.start, hi - vma.start
    may_reclaim = True
    while i0 < i1:
        i0, reclaimed = _write_some(m, vma, i0, i1, value, may_reclaim)
        # after a reclaim that did not free enough, the next pass goes to the OOM killer
        may_reclaim = not reclaimed


def _write_some(m: MMState, vma: VMA, i0: int, i1: int, value: int | None,
                may_reclaim: bool) -> tuple[int, bool]:
    """Handle a prefix of [i0, i1); return where to go on, and whether this
    pass only reclaimed (the caller then comes back without reclaim)."""
    ft = m.frames
    pt = vma.pt
    seg = pt[i0:i1]
    swap = np.flatnonzero(seg & _S)
    if len(swap):
        if swap[0] == 0:
            do_swap_page(m, vma, vma.start + i0, write=True)
            return i0, False  # mapped now: the write goes on as for a present page
        i1 = i0 + int(swap[0])
        seg = pt[i0:i1]
    frames = seg >> PTE_SHIFT
    present = (seg & _P) != 0
    writable = (seg & _W) != 0
    zero = present & (frames == 0)
    ro = present & ~writable & ~zero
    empty = seg == 0
    # do_wp_page: reuse a page nobody else holds (wp_can_reuse_anon_folio)
    reuse = np.zeros(len(seg), bool)
    if ro.any():
        rof = frames[ro]
        ok = (ft.refcount[rof] == 1) | ((ft.flags[rof] & PG_ANON_EXCLUSIVE) != 0)
        if not ok.all():
            ok |= _try_free_swap(m, rof, ok)
        reuse[ro] = ok
    new = empty | zero | (ro & ~reuse)
    need = np.cumsum(new)
    total = int(need[-1]) if len(need) else 0
    if total > ft.nr_free:
        if may_reclaim:
            # the pages of this range are held (locked, in the kernel) while
            # reclaim runs, so it cannot take back what the fault works on
            held = frames[present & ~zero]
            m.pinned = held
            try:
                try_to_free_pages(m, total - ft.nr_free)
            finally:
                m.pinned = None
            return i0, True
        k = int(np.searchsorted(need, ft.nr_free, side="right"))
        if k == 0:
            out_of_memory(m, vma.mm)
            return i0, False  # the victim's frames are free now; go again
        return _write_prefix(m, vma, i0, i0 + k, value, new[:k], reuse[:k], ro[:k],
                             empty[:k] | zero[:k]), False
    return _write_prefix(m, vma, i0, i1, value, new, reuse, ro, empty | zero), False


def _try_free_swap(m: MMState, frames: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """folio_free_swap in wp_can_reuse_anon_folio: a swap-cache page whose
    only other reference is the cache may drop it and be reused."""
    ft = m.frames
    out = np.zeros(len(frames), bool)
    if m.swap is None:
        return out
    cand = np.flatnonzero(~ok & ((ft.flags[frames] & PG_SWAPCACHE) != 0)
                          & (ft.refcount[frames] == 2))
    for j in cand.tolist():
        f = int(frames[j])
        if folio_free_swap(m, f):
            out[j] = ft.refcount[f] == 1
    return out


def _write_prefix(m: MMState, vma: VMA, i0: int, i1: int, value: int | None, new: np.ndarray,
                  reuse: np.ndarray, ro: np.ndarray, fresh: np.ndarray) -> int:
    ft = m.frames
    seg = vma.pt[i0:i1]
    nnew = int(np.count_nonzero(new))
    counters = m.counters
    if nnew:
        anon_vma_prepare(m, vma)
        idx = np.flatnonzero(new)
        old = seg[idx] >> PTE_SHIFT
        cow = ro[idx]
        vpns = vma.start + i0 + idx
        frames = ft.alloc(nnew)
        if value is None:  # populate: a copy keeps the data, a fresh page is zeroed
            ft.data[frames] = np.where(cow, ft.data[old], 0)
        if cow.any():
            # wp_page_copy: the old page loses this mapping
            cf = old[cow]
            page_remove_rmap(m, cf, vma, vpns[cow])
            put_pages(m, cf)
            counters["cow"] += int(np.count_nonzero(cow))
        seg[idx] = (frames << PTE_SHIFT) | FRESH
        page_add_new_anon_rmap(m, frames, vma, vpns)
        lru_add(m, frames)
        vma.mm.rss += int(np.count_nonzero(fresh))
        counters["pgfault"] += nnew
    if reuse.any():
        idx = np.flatnonzero(reuse)
        rf = seg[idx] >> PTE_SHIFT
        moving = (ft.flags[rf] & PG_ANON_EXCLUSIVE) == 0
        if moving.any():
            page_move_anon_rmap(m, rf[moving], vma, vma.start + i0 + idx[moving])
        counters["cow_reuse"] += len(idx)
        counters["pgfault"] += len(idx)
    seg |= _W | _Y | _D
    if value is not None:
        ft.data[seg >> PTE_SHIFT] = value
    return i1


def do_swap_page(m: MMState, vma: VMA, vpn: int, write: bool) -> None:
    """do_swap_page: map the page of the swap PTE at vpn."""
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
    if copied:
        if sw.swap_map[slot] == 0 and (sw.full() or vma.flags & VM_LOCKED):
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
    if sw.swap_map[slot] == 0 and (sw.full() or vma.flags & VM_LOCKED
                                   or (write and ft.refcount[frame] == 2)):
        # folio_free_swap: with its swap copy gone the page is dirty, read
        # fault or not (MADV_FREE then treats it as dirty)
        ft.flags[frame] |= PG_DIRTY
        delete_from_swap_cache(m, frame)


def early_cow(m: MMState, vma: VMA, idx: np.ndarray) -> None:
    """Private copies for the present pages at vma.pt[idx], taken now rather
    than at the next write: Hugh Dickins' mremap fix for anonmm (REFERENCES.md
    row 8), which cannot find a page shared with another mm at two addresses.
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
        _populate_write(m, vma, lo, hi)
    else:
        read_range(m, vma, lo, hi, None)


def _populate_write(m: MMState, vma: VMA, lo: int, hi: int) -> None:
    """A write fault (FOLL_WRITE) on every page: data kept, COW broken."""
    write_range(m, vma, lo, hi, None)
