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
    VM_READ,
    VM_VOLATILE,
    VM_WRITE,
    VMA,
)
from .page_alloc import PG_ANON_EXCLUSIVE, PG_SWAPCACHE
from .rmap.core import (
    page_add_new_anon_rmap,
    page_dup_rmap,
    page_move_anon_rmap,
    page_remove_rmap,
    put_pages,
)

if TYPE_CHECKING:
    from .machine import Machine
    from .mm_types import MM

_P, _W, _Y, _D, _S = PTE_PRESENT, PTE_WRITE, PTE_YOUNG, PTE_DIRTY, PTE_SWAP
FRESH = _P | _W | _Y | _D


def anon_vma_prepare(m: Machine, vma: VMA) -> None:
    """anon_vma_prepare: give vma an anon_vma before its first anonymous page.

    find_mergeable_anon_vma first: an adjacent VMA whose anon_vma came from
    its own prepare (singular chain), with flags equal but for access bits
    and a linear pgoff, lends its anon_vma.
    """
    if vma.lineage is not None:
        return
    share = find_mergeable_anon_vma(vma)
    m.rmap.vma_prepare(vma, share)
    if share is not None:
        vma.lineage = share.lineage
    else:
        from .mmap import new_lineage
        vma.lineage = new_lineage(m)
    vma.forked = False


def find_mergeable_anon_vma(vma: VMA) -> VMA | None:
    """find_mergeable_anon_vma: the next VMA, then the previous one."""
    mm = vma.mm
    prev, nxt = mm.prev_next(vma.start, vma.end)
    for a, b, old in ((vma, nxt, nxt), (prev, vma, prev)):
        if old is None or a is None or b is None:
            continue
        if (a.end == b.start and not ((a.flags ^ b.flags) & ~(VM_READ | VM_WRITE | 0x4))
                and b.pgoff == a.pgoff + (b.start - a.start)
                and old.lineage is not None and not old.forked):
            return old
    return None


def access_ok(vma: VMA, write: bool) -> bool:
    return bool(vma.flags & (VM_WRITE if write else (VM_READ | VM_WRITE)))


def handle_mm_fault_range(m: Machine, mm: MM, start: int, end: int, write: bool,
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
                    from .volatile import volatile_fault
                    volatile_fault(m, vma)
                    continue
        if write:
            write_range(m, vma, vpn, hi, value)
        else:
            read_range(m, vma, vpn, hi, values)
        if vma.dead:  # cannot happen: the OOM killer never picks a task mid-range twice
            raise AssertionError("vma freed under a fault")
        vpn = hi


def read_range(m: Machine, vma: VMA, lo: int, hi: int, values: list[int] | None) -> None:
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
            from .swap_state import do_swap_page
            do_swap_page(m, vma, vma.start + i0, write=False)
            if values is not None:
                values.append(int(m.frames.data[int(vma.pt[i0]) >> PTE_SHIFT]))
            vma.pt[i0] |= _Y
            i0 += 1


def write_range(m: Machine, vma: VMA, lo: int, hi: int, value: int | None) -> None:
    """Stores of value to [lo, hi) of vma (all pages writable by prot);
    value None is a write fault that keeps the data (populate)."""
    i0, i1 = lo - vma.start, hi - vma.start
    may_reclaim = True
    while i0 < i1:
        i0, reclaimed = _write_some(m, vma, i0, i1, value, may_reclaim)
        # after a reclaim that did not free enough, the next pass goes to the OOM killer
        may_reclaim = not reclaimed


def _write_some(m: Machine, vma: VMA, i0: int, i1: int, value: int | None,
                may_reclaim: bool) -> tuple[int, bool]:
    """Handle a prefix of [i0, i1); return where to go on, and whether this
    pass only reclaimed (the caller then comes back without reclaim)."""
    ft = m.frames
    pt = vma.pt
    seg = pt[i0:i1]
    swap = np.flatnonzero(seg & _S)
    if len(swap):
        if swap[0] == 0:
            from .swap_state import do_swap_page
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
                m.reclaim_for(total - ft.nr_free)
            finally:
                m.pinned = None
            return i0, True
        k = int(np.searchsorted(need, ft.nr_free, side="right"))
        if k == 0:
            m.out_of_memory(vma.mm)
            return i0, False  # the victim's frames are free now; go again
        return _write_prefix(m, vma, i0, i0 + k, value, new[:k], reuse[:k], ro[:k],
                             empty[:k] | zero[:k]), False
    return _write_prefix(m, vma, i0, i1, value, new, reuse, ro, empty | zero), False


def _try_free_swap(m: Machine, frames: np.ndarray, ok: np.ndarray) -> np.ndarray:
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
        if m.swap.try_free_swap(m, f):
            out[j] = ft.refcount[f] == 1
    return out


def _write_prefix(m: Machine, vma: VMA, i0: int, i1: int, value: int | None, new: np.ndarray,
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
        m.lru_add(frames)
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


def zap_vma_range(m: Machine, vma: VMA, lo: int, hi: int) -> None:
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
        assert m.swap is not None  # swap PTEs exist only while swap is on
        m.swap.free_entries(m, ptes[swp] >> PTE_SHIFT)
    seg[nz] = 0


def free_swap_cache(m: Machine, frames: np.ndarray) -> None:
    """free_swap_cache, as free_pages_and_swap_cache calls it on zapped pages:
    a swap-cache page that nothing maps any more, and that no swap PTE
    names, gives its slot back (so a page read back from swap and then
    unmapped does not keep swap space)."""
    ft = m.frames
    cached = frames[(ft.flags[frames] & PG_SWAPCACHE) != 0]
    if not len(cached) or m.swap is None:
        return
    for f in np.unique(cached[ft.mapcount[cached] == 0]).tolist():
        m.swap.try_free_swap(m, f)


def copy_page_range(m: Machine, dst: VMA, src: VMA) -> None:
    """copy_page_range at fork: share every PTE of src with dst, COW.

    vma_needs_copy: a VMA without an anon_vma copies nothing (its zero-page
    entries are faulted again later). Present anonymous pages are
    write-protected in both, lose PG_anon_exclusive and gain a mapping; the
    child's copies start old (pte_mkold). Swap entries are duplicated.
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
        from .swapfile import mmlist_add_after
        assert m.swap is not None  # swap PTEs exist only while swap is on
        m.swap.duplicate(frames[swp], dst.mm, src.mm)
        dst.mm.swapents += int(np.count_nonzero(swp))
        mmlist_add_after(m, dst.mm, src.mm)


def early_cow(m: Machine, vma: VMA, idx: np.ndarray) -> None:
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
    m.lru_add(new)
    m.counters["early_cow"] += len(idx)


def populate_range(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """populate_vma_page_range (mlock, mremap of a locked VMA): fault in every
    page, writing where the VMA is writable (breaking COW), reading otherwise."""
    if vma.flags & VM_WRITE:
        _populate_write(m, vma, lo, hi)
    else:
        read_range(m, vma, lo, hi, None)


def _populate_write(m: Machine, vma: VMA, lo: int, hi: int) -> None:
    """A write fault (FOLL_WRITE) on every page: data kept, COW broken."""
    write_range(m, vma, lo, hi, None)
