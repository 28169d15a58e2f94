# SPDX-License-Identifier: GPL-2.0-only
"""The scheme-independent half of rmap: page bookkeeping and rmap_walk.

Models mm/rmap.c (Linux 6.18) where it does not depend on the scheme:
mapcount and refcount, page->index, PG_anon_exclusive, and rmap_walk with
its control object. A scheme only yields candidate (vma, vpn) pairs; the
shared page_vma_mapped step here confirms each one and charges the PTE it
looked at, so exact pte_chain hits and object-based walks that visit VMAs
which do not map the page show their difference in the numbers by
themselves.

Invariants (checked by debug_vm): a present anonymous frame's mapcount is
the number of PTEs mapping it; its refcount is mapcount plus one for the
swap cache; every PTE mapping it is found by rmap_walk.

Lock order modelled (mm/rmap.c): mmap_lock -> anon_vma->rwsem (root's in
``modern``) -> page table lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..mm_types import PTE_PRESENT, PTE_SHIFT, PTE_YOUNG, VM_LOCK_RMAP, VM_READ, VM_WRITE
from ..page_alloc import PG_ANON, PG_ANON_EXCLUSIVE, PG_REFERENCED
from ..swap import put_pages
from .protocol import WalkStats
from .walk_plan import referenced_by_plan

if TYPE_CHECKING:
    from ..mm_state import MMState
    from ..mm_types import VMA


def linear_page_index(vma: VMA, vpns: np.ndarray | int):
    """linear_page_index: the page->index of vpn in vma."""
    return vma.pgoff + (vpns - vma.start)


def page_add_new_anon_rmap(m: MMState, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
    """folio_add_new_anon_rmap: fresh exclusive pages now mapped once in vma."""
    ft = m.frames
    ft.mapcount[frames] = 1
    ft.refcount[frames] = 1
    ft.flags[frames] = PG_ANON | PG_ANON_EXCLUSIVE
    ft.index[frames] = linear_page_index(vma, vpns)
    ft.lineage[frames] = vma.lineage
    m.rmap.page_add_new_anon(frames, vma, vpns)


def page_add_anon_rmap(m: MMState, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                       exclusive: bool) -> None:
    """folio_add_anon_rmap_ptes: map existing anon pages (swap-in) in vma."""
    ft = m.frames
    fresh = np.fromiter((ft.mapping[f] is None for f in frames.tolist()), bool, len(frames))
    if fresh.any():  # a page read from swap: __folio_set_anon gives it its index
        ft.index[frames[fresh]] = linear_page_index(vma, vpns[fresh])
    for f in frames.tolist():
        if ft.lineage[f] is None or (ft.mapcount[f] == 0 and not lineage_linked(m, ft.lineage[f])):
            # as anon_vma_chain's page_add_anon: an exclusive page gets the VMA's
            # anon_vma, a shared one the oldest (the root), so every PTE stays findable
            ft.lineage[f] = vma.lineage if exclusive else lineage_root(vma.lineage)
    ft.mapcount[frames] += 1
    if exclusive:
        ft.flags[frames] |= PG_ANON_EXCLUSIVE
    m.rmap.page_add_anon(frames, vma, vpns, exclusive)


def page_dup_rmap(m: MMState, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
    """folio_try_dup_anon_rmap_ptes at fork: one more mapping, no longer exclusive."""
    ft = m.frames
    ft.mapcount[frames] += 1
    ft.refcount[frames] += 1
    ft.flags[frames] &= ~np.uint32(PG_ANON_EXCLUSIVE)
    m.rmap.page_dup(frames, vma, vpns)


def page_remove_rmap(m: MMState, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
    """folio_remove_rmap_ptes: the PTEs at vpns stopped mapping frames."""
    m.frames.mapcount[frames] -= 1
    m.rmap.page_remove(frames, vma, vpns)


def page_move_anon_rmap(m: MMState, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
    """folio_move_anon_rmap: reuse at do_wp_page makes the page vma's own."""
    m.frames.flags[frames] |= PG_ANON_EXCLUSIVE
    m.frames.lineage[frames] = vma.lineage
    m.rmap.page_move(frames, vma, vpns)


# -- anon_vma: preparation and fork ---------------------------------------------

class Lineage:
    """Identity of an anon_vma as a 6.18 kernel would assign it (merge token).

    parent: the lineage of the VMA it was forked from (None for one made by
    anon_vma_prepare); a VMA is linked to its lineage and all its parents.
    """

    __slots__ = ("parent", "serial")

    def __init__(self, serial: int, parent: Any = None) -> None:
        self.serial = serial
        self.parent = parent

    def __repr__(self) -> str:
        return f"L{self.serial}"


def new_lineage(m: MMState, parent: Any = None) -> Lineage:
    """A fresh anon_vma identity (what anon_vma_alloc would give 6.18)."""
    m.vma_serial += 1
    return Lineage(m.vma_serial, parent)


def lineage_root(lineage: Any) -> Any:
    """anon_vma->root: the oldest lineage a VMA of this lineage is linked to."""
    while lineage.parent is not None:
        lineage = lineage.parent
    return lineage


def linked_to(vma: VMA, lineage: object) -> bool:
    """Whether vma has an anon_vma_chain link to lineage's anon_vma."""
    mine: Any = vma.lineage
    while mine is not None:
        if mine is lineage:
            return True
        mine = mine.parent
    return False


def lineage_linked(m: MMState, lineage: object) -> bool:
    """Whether some live VMA is still linked to lineage (its anon_vma is not
    freed). Cost: O(VMAs)."""
    return any(linked_to(v, lineage) for t in m.tasks.values() if t.mm is not None
               for v in t.mm.vmas)


def find_mergeable_anon_vma(vma: VMA, lend_forked: bool = False) -> VMA | None:
    """find_mergeable_anon_vma: the next VMA, then the previous one.

    A VMA that came from a parent (a chain not singular) lends nothing
    unless lend_forked (the kernels before commit d0e9fe1758f2, 2010)."""
    mm = vma.mm
    prev, nxt = mm.prev_next(vma.start, vma.end)
    for a, b, old in ((vma, nxt, nxt), (prev, vma, prev)):
        if old is None or a is None or b is None:
            continue
        if (a.end == b.start and not ((a.flags ^ b.flags) & ~(VM_READ | VM_WRITE | 0x4))
                and b.pgoff == a.pgoff + (b.start - a.start)
                and old.lineage is not None and (lend_forked or not old.forked)):
            return old
    return None


def anon_vma_prepare(m: MMState, vma: VMA) -> None:
    """Models mm/rmap.c __anon_vma_prepare(): give vma an anon_vma before its
    first anonymous page.

    find_mergeable_anon_vma first: an adjacent VMA whose anon_vma came from
    its own prepare (singular chain; any, in an era whose rules lend_forked),
    with flags equal but for access bits and a linear pgoff, lends its
    anon_vma. Raises NoMem (the scheme's allocation) with vma unchanged.
    """
    if vma.lineage is not None:
        return
    share = find_mergeable_anon_vma(vma, m.rules.lend_forked)
    m.rmap.vma_prepare(vma, share)
    if share is None:
        vma.lineage = new_lineage(m)
        vma.forked = False
    else:
        vma.lineage = share.lineage
        vma.forked = share.forked
    m.vma_serial += 1
    vma.linked = m.vma_serial  # at the tail of the anon_vma's list


def anon_vma_fork(m: MMState, vma: VMA, pvma: VMA) -> None:
    """Models mm/rmap.c anon_vma_fork(): the child's copy vma of pvma gets its
    anon_vma links (the scheme's) and, when pvma has anonymous pages, an
    anon_vma of its own chained to the parent's (a forked lineage).

    Raises NoMem with vma holding nothing (dup_mmap frees it).
    """
    vma.anon_vma = None
    vma.lineage = None
    vma.forked = False
    m.rmap.vma_fork(vma, pvma)
    if pvma.lineage is not None:
        vma.lineage = new_lineage(m, pvma.lineage)
        vma.forked = True


class RmapWalkControl:
    """rmap_walk_control: what to do at each mapping, and when to stop.

    rmap_one(frame, vma, vpn) returns False to stop the walk; done(frame)
    is asked after each VMA; invalid_vma(vma) skips a VMA before its PTE is
    looked at. kind names the walk ("referenced", "unmap", "check", ...) for
    schemes whose locking differs by walk (the 2002 pte_chain rmap's try_to_unmap_one takes
    the page table lock with a trylock, its page_referenced takes none); a
    walk with a done callback is try_to_unmap's ("unmap") unless told.
    """

    __slots__ = ("done", "invalid_vma", "kind", "rmap_one")

    def __init__(self, rmap_one: Callable[[int, VMA, int], bool],
                 done: Callable[[int], bool] | None = None,
                 invalid_vma: Callable[[VMA], bool] | None = None,
                 kind: str | None = None) -> None:
        self.rmap_one = rmap_one
        self.done = done
        self.invalid_vma = invalid_vma
        self.kind = kind if kind is not None else ("unmap" if done is not None else "walk")


def rmap_walk(m: MMState, frame: int, rwc: RmapWalkControl, charge: bool = True) -> None:
    """rmap_walk_anon: visit every PTE mapping frame, through the scheme.

    Cost: the scheme's candidates (charged to walks.vmas/anon_vmas) plus one
    PTE look-up per candidate whose range covers the page (walks.ptes), and
    one page table trylock per candidate for the walks the scheme trylocks in
    (counters["trylock"]; none fails here: replay is one CPU with nothing
    concurrent; rmaplab.contention.reclaim makes them fail).
    """
    st = m.walks if charge else None
    if st is not None:
        st.count += 1
    rmap_one = rwc.rmap_one
    done = rwc.done
    invalid = rwc.invalid_vma
    trylock = charge and rwc.kind in m.rmap.trylock_walks
    counters = m.counters
    want = (frame << PTE_SHIFT) | PTE_PRESENT
    mask = ~((1 << PTE_SHIFT) - 1) | PTE_PRESENT
    for vma, vpn in m.rmap.candidates(frame, st):
        if trylock:
            counters["trylock"] += 1
        if vma is None or (invalid is not None and invalid(vma)):
            continue
        i = vpn - vma.start
        if 0 <= i < vma.end - vma.start:
            if st is not None:
                st.ptes += 1
            # page_vma_mapped_walk: the PTE maps this very frame
            if (int(vma.pt[i]) & mask) == want and not rmap_one(frame, vma, vpn):
                break
        if done is not None and done(frame):
            break


def page_referenced(m: MMState, frame: int) -> int:
    """folio_referenced: count and clear the young bits of frame's PTEs.

    Stops as soon as every mapping was seen (the kernel's mapcount
    countdown), which is why the order a scheme walks in matters. The
    scheme hears how the walk ended (referenced_end: anonmm's migration).
    """
    ft = m.frames
    left = [int(ft.mapcount[frame])]
    refs = [0]
    if ft.flags[frame] & PG_REFERENCED:
        ft.flags[frame] &= ~np.uint32(PG_REFERENCED)
        refs[0] += 1
    if left[0] <= 0:
        return refs[0]

    def one(f: int, vma: VMA, vpn: int) -> bool:
        i = vpn - vma.start
        pte = int(vma.pt[i])
        if pte & PTE_YOUNG:
            vma.pt[i] = pte & ~PTE_YOUNG
            refs[0] += 1
        left[0] -= 1
        return left[0] > 0

    rmap_walk(m, frame, RmapWalkControl(one, kind="referenced"))
    m.rmap.referenced_end(frame, left[0] <= 0)
    return refs[0]


def page_referenced_batch(m: MMState, frames: np.ndarray,
                          visited: np.ndarray | None = None,
                          listed: np.ndarray | None = None) -> np.ndarray:
    """folio_referenced for each frame, in one pass per walk order.

    Gives exactly what calling page_referenced(m, f) for each frame in turn
    gives (referenced counts, young bits cleared, walks charged), since
    walks of different pages touch different PTEs: for each group of frames
    sharing a walk order, it looks at the whole group's PTEs one VMA at a
    time and finds, per frame, the VMA at which the kernel's mapcount
    countdown ends the walk. If visited (listed) is given, visited[j] gets
    the VMAs the walk of frames[j] examined (would examine without
    stopping). Cost: O(VMAs x frames) array work per group; batched only
    for schemes with walk_groups. Schemes with walk_plans (pte_chain,
    anonmm, the 2004 anon_vma) go through rmap.walk_plan instead: the
    mappings found from an index, the charges computed, not stepped.
    """
    frames = np.asarray(frames, dtype=np.int64)
    refs = np.zeros(len(frames), np.int64)
    if not len(frames):
        return refs
    plans = m.rmap.walk_plans(frames)
    if plans is not None:
        pos = {int(f): j for j, f in enumerate(frames.tolist())}
        for plan in plans:
            pf = plan.frames
            sel = np.fromiter((pos[x] for x in pf.tolist()), np.int64, len(pf))
            if plan.literal:
                _referenced_one_by_one(m, pf, sel, refs, visited, listed)
            else:
                referenced_by_plan(m, plan, sel, refs, visited, listed)
        return refs
    groups = m.rmap.walk_groups(frames)
    if groups is None:
        _referenced_one_by_one(m, frames, np.arange(len(frames)), refs, visited, listed)
        return refs
    ft = m.frames
    st = m.walks
    pos = {int(f): j for j, f in enumerate(frames.tolist())}
    flags = ft.flags[frames]
    had = (flags & PG_REFERENCED) != 0
    ft.flags[frames] = flags & ~np.uint32(PG_REFERENCED)
    refs += had
    want_key = (frames << PTE_SHIFT) | PTE_PRESENT
    mask = ~((1 << PTE_SHIFT) - 1) | PTE_PRESENT
    for vmas, f, index, interval, av in groups:
        n = len(f)
        sel = np.fromiter((pos[x] for x in f.tolist()), np.int64, n)
        left = ft.mapcount[f].astype(np.int64)
        active = left > 0
        nwalks = int(np.count_nonzero(active))
        st.count += nwalks  # a page mapped nowhere is not walked at all
        if av is not None:
            st.anon_vmas += nwalks
        if interval:
            started = active.copy()
            for vma in vmas:
                off = index - vma.pgoff
                on = started & (off >= 0) & (off < vma.end - vma.start)
                st.listed += int(np.count_nonzero(on))
                if listed is not None:
                    listed[sel[on]] += 1
        else:
            st.listed += nwalks * len(vmas)
            if listed is not None:
                listed[sel[active]] += len(vmas)
        want = want_key[sel]
        for vma in vmas:
            if not active.any():
                break
            off = index - vma.pgoff
            inr = (off >= 0) & (off < vma.end - vma.start)
            visit = active & inr if interval else active
            st.vmas += int(np.count_nonzero(visit))
            if visited is not None:
                visited[sel[visit]] += 1
            if vma.flags & VM_LOCK_RMAP:
                continue
            look = np.flatnonzero(visit & inr)
            if not len(look):
                continue
            st.ptes += len(look)
            i = off[look]
            ptes = vma.pt[i]
            hit = (ptes & mask) == want[look]
            if hit.any():
                hl = look[hit]
                hi = i[hit]
                hp = ptes[hit]
                young = (hp & PTE_YOUNG) != 0
                if young.any():
                    vma.pt[hi[young]] = hp[young] & ~PTE_YOUNG
                    np.add.at(refs, sel[hl[young]], 1)
                left[hl] -= 1
                active[hl] = left[hl] > 0
    return refs


def _referenced_one_by_one(m: MMState, frames: np.ndarray, sel: np.ndarray, refs: np.ndarray,
                           visited: np.ndarray | None, listed: np.ndarray | None) -> None:
    """page_referenced for each frame in turn, the walk's own steps."""
    st = m.walks
    for j, f in zip(sel.tolist(), frames.tolist()):
        before, lbefore = st.vmas, st.listed
        refs[j] = page_referenced(m, f)
        if visited is not None:
            visited[j] = st.vmas - before
        if listed is not None:
            listed[j] = st.listed - lbefore


def find_mappings(m: MMState, frame: int) -> list[tuple[VMA, int]]:
    """Every (vma, vpn) whose PTE maps frame, by an uncharged full walk (checker)."""
    found: list[tuple[VMA, int]] = []

    def one(f: int, vma: VMA, vpn: int) -> bool:
        found.append((vma, vpn))
        return True

    rmap_walk(m, frame, RmapWalkControl(one, kind="check"), charge=False)
    return found


__all__ = [
    "Lineage",
    "RmapWalkControl",
    "WalkStats",
    "anon_vma_fork",
    "anon_vma_prepare",
    "find_mappings",
    "find_mergeable_anon_vma",
    "lineage_linked",
    "lineage_root",
    "linear_page_index",
    "linked_to",
    "new_lineage",
    "page_add_anon_rmap",
    "page_add_new_anon_rmap",
    "page_dup_rmap",
    "page_move_anon_rmap",
    "page_referenced",
    "page_remove_rmap",
    "put_pages",
    "rmap_walk",
]
