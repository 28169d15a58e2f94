# SPDX-License-Identifier: GPL-2.0-only
"""The invariant checker: the model's CONFIG_DEBUG_VM.

check_machine asserts, for the whole machine:
  - no VMA is both VM_LOCKED and VM_VOLATILE (volatile ranges' VM_SPECIAL);
  - every mm's VMAs are sorted, do not overlap, belong to it, are live, and
    have one PTE slot per page; the slab's VMA count equals the VMAs linked;
  - every present anonymous PTE maps an allocated PG_anon frame, and an
    uncharged rmap walk from that frame finds this very PTE;
  - each frame's mapcount equals the PTEs mapping it, its refcount is the
    mapcount plus one for the swap cache, and no allocated frame is
    unreferenced (no leak);
  - rss and swap-entry counts of each mm match its page tables;
  - a VMA with anonymous pages has an anon_vma (a lineage), and for the
    anon_vma schemes VMAs share an anon_vma exactly when they share a
    lineage (for the 2004 anon_vma, shared by a fork family, VMAs sharing a
    lineage share the anon_vma);
  - an anon_vma is the anon_vma of VMAs of one mm only (none is taken over
    while another mm's VMA still holds it: commit 2555283eb40d's bug);
  - object accounting for the anon_vma_chain schemes: every allocated avc is
    on the chain of a live VMA, every allocated anon_vma is reachable from
    one (through an avc, or as the root of one);
  - the scheme's own invariants (every anon_vma reachable, freed once unused);
  - with no task left, no frame, VMA, anon_vma, avc, pte_chain or anonmm.
Raises InvariantViolated (a ModelBug) describing the first violation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import numpy as np

from .errors import InvariantViolated
from .mm_types import PTE_PRESENT, PTE_SHIFT, PTE_SWAP, VM_LOCKED, VM_VOLATILE
from .page_alloc import PG_ANON, PG_SWAPCACHE
from .rmap.core import find_mappings

if TYPE_CHECKING:
    from .mm_state import MMState, SwapArea


def _fail(msg: str) -> NoReturn:
    raise InvariantViolated(msg)


def check_machine(m: MMState) -> None:
    """Assert every invariant above; raises ModelBug at the first that fails."""
    ft = m.frames
    nframes = ft.next_unused
    maps = np.zeros(nframes, np.int64)
    nvmas = 0
    pte_frames: list[np.ndarray] = []
    pte_where: list[tuple[str, object, np.ndarray]] = []
    holder: dict[int, str] = {}  # id(anon_vma) -> the task whose VMAs hold it
    for name, task in m.tasks.items():
        mm = task.mm
        if mm is None or mm.dead:
            _fail(f"task {name} is alive without an mm")
        prev_end = -1
        rss = swapents = 0
        lineage_av: dict[int, object] = {}
        for vma in mm.vmas:
            nvmas += 1
            if vma.dead or vma.mm is not mm:
                _fail(f"{name}: dead or foreign {vma} linked")
            if vma.start < prev_end or vma.start >= vma.end:
                _fail(f"{name}: VMAs overlap or are empty at {vma}")
            prev_end = vma.end
            if vma.flags & VM_LOCKED and vma.flags & VM_VOLATILE:
                _fail(f"{name}: {vma} is locked and volatile (VM_SPECIAL is never mlocked)")
            if vma.pt is None or len(vma.pt) != vma.end - vma.start:
                _fail(f"{name}: {vma} has {0 if vma.pt is None else len(vma.pt)} PTE slots")
            pt = vma.pt
            present = (pt & PTE_PRESENT) != 0
            frames = pt >> PTE_SHIFT
            anon = present & (frames != 0)
            idx = np.flatnonzero(anon)
            swapents += int(np.count_nonzero(pt & PTE_SWAP))
            if len(idx):
                rss += len(idx)
                f = frames[idx]
                if f.max() >= nframes:
                    _fail(f"{name}: {vma} maps a frame never allocated")
                np.add.at(maps, f, 1)
                if vma.lineage is None:
                    _fail(f"{name}: {vma} maps anonymous pages without an anon_vma")
                pte_frames.append(f)
                pte_where.append((name, vma, vma.start + idx))
            if m.rmap.uses_anon_vma:
                if (vma.anon_vma is None) != (vma.lineage is None):
                    _fail(f"{name}: {vma} anon_vma {vma.anon_vma} vs lineage {vma.lineage}")
                if vma.lineage is not None:
                    key = id(vma.lineage)
                    seen = lineage_av.setdefault(key, vma.anon_vma)
                    if seen is not vma.anon_vma:
                        _fail(f"{name}: {vma} shares a lineage but not the anon_vma")
            if m.rmap.uses_anon_vma and m.rmap.anon_vma_mirrors_lineage and vma.anon_vma:
                other = holder.setdefault(id(vma.anon_vma), name)
                if other != name:
                    _fail(f"{name}: {vma} holds {vma.anon_vma!r} as its own anon_vma, which "
                          f"a VMA of task {other} still holds (reused while in use)")
        # Andrea Arcangeli's 2004 anon_vma is one per fork family: a child's
        # VMAs share their parent's, so only lineage -> anon_vma is asked there
        if m.rmap.uses_anon_vma and m.rmap.anon_vma_mirrors_lineage:
            avs = [v.anon_vma for v in mm.vmas if v.anon_vma is not None]
            if len({id(a) for a in avs}) != len(lineage_av):
                _fail(f"{name}: anon_vmas and lineages do not correspond one to one")
        if rss != mm.rss:
            _fail(f"{name}: rss {mm.rss} but {rss} anonymous PTEs")
        if swapents != mm.swapents:
            _fail(f"{name}: swapents {mm.swapents} but {swapents} swap PTEs")
    if nvmas != m.slab.live["vma"]:
        _fail(f"{m.slab.live['vma']} VMAs allocated but {nvmas} linked (leak)")

    live = ft.allocated()
    inuse = np.zeros(nframes, bool)
    inuse[live] = True
    if (maps[~inuse] != 0).any():
        _fail(f"free frames are mapped: {np.flatnonzero(maps * ~inuse)[:5]}")
    mc = ft.mapcount[:nframes].astype(np.int64)
    bad = np.flatnonzero((mc != maps) & inuse)
    if len(bad):
        f = int(bad[0])
        _fail(f"frame {f}: mapcount {mc[f]} but {maps[f]} PTEs map it")
    swapcache = (ft.flags[:nframes] & PG_SWAPCACHE) != 0
    want_ref = maps + swapcache
    bad = np.flatnonzero((ft.refcount[:nframes] != want_ref) & inuse)
    if len(bad):
        f = int(bad[0])
        _fail(f"frame {f}: refcount {ft.refcount[f]} but mapcount {maps[f]} "
              f"+ swapcache {int(swapcache[f])}")
    if len(live) and (ft.flags[live] & PG_ANON == 0).any():
        _fail("an allocated frame is not an anonymous page")

    if "anon_vma_chain" in m.rmap.objects():
        check_chain_objects(m)  # before any walk: a leaked avc may list a freed VMA

    # every PTE is found by an rmap walk from its frame; one walk per frame
    # (the walk is uncharged and changes nothing), so a frame that a thousand
    # forked mms map is walked once, not a thousand times
    walked: dict[int, set[tuple[int, int]]] = {}
    for (name, vma, vpns), frames in zip(pte_where, pte_frames):
        for f, vpn in zip(frames.tolist(), vpns.tolist()):
            found = walked.get(f)
            if found is None:
                found = walked[f] = {(id(v), p) for v, p in find_mappings(m, f)}
            if (id(vma), vpn) not in found:
                _fail(f"rmap walk from frame {f} misses task {name}'s {vma} at {vpn << 12:#x} "
                      f"(mapping {ft.mapping[f]!r}, index {ft.index[f]:#x})")
    if m.swap is not None:
        check_swap_area(m, m.swap)
    try:
        m.rmap.check()
    except InvariantViolated:
        raise
    except AssertionError as e:
        _fail(f"{m.rmap.name}: {e}")
    if not m.tasks:
        leftovers = {k: v for k, v in m.objects().items() if v}
        if leftovers and not (m.swap is not None and set(leftovers) == {"page"}):
            _fail(f"no task left but objects remain: {leftovers}")


def check_swap_area(m: MMState, sw: SwapArea) -> None:
    """swap_map = swap PTEs naming the slot; the cache and pages agree."""
    counts = np.zeros(sw.nslots, np.int64)
    for t in m.tasks.values():
        mm = t.mm
        assert mm is not None  # every task in tasks is alive
        for vma in mm.vmas:
            pt = vma.pt
            slots = pt[(pt & PTE_SWAP) != 0] >> PTE_SHIFT
            if len(slots):
                np.add.at(counts, slots, 1)
            if len(slots) and not mm.on_mmlist:
                _fail(f"task {t.name} has swap entries but is not on mmlist")
    bad = np.flatnonzero(counts != sw.swap_map)
    if len(bad):
        s = int(bad[0])
        _fail(f"slot {s}: swap_map {sw.swap_map[s]} but {counts[s]} swap PTEs")
    ft = m.frames
    for slot in np.flatnonzero(sw.has_cache).tolist():
        f = int(sw.cache[slot])
        if f < 0 or not ft.flags[f] & PG_SWAPCACHE or ft.private[f] != slot:
            _fail(f"slot {slot}: swap cache page {f} does not point back")
    if (sw.cache[~sw.has_cache] != -1).any():
        _fail("a slot without SWAP_HAS_CACHE names a page")
    used = int(np.count_nonzero((sw.swap_map > 0) | sw.has_cache))
    if used != sw.inuse:
        _fail(f"inuse {sw.inuse} but {used} slots used")


def check_chain_objects(m: MMState) -> None:
    """The slab's avcs and anon_vmas against what live VMAs reach (a leak is
    an object allocated that nothing reaches)."""
    avcs = 0
    reach: dict[int, object] = {}
    for task in m.tasks.values():
        assert task.mm is not None  # checked above
        for vma in task.mm.vmas:
            avcs += len(vma.avcs)
            for avc in vma.avcs:
                av = avc.anon_vma
                reach[id(av)] = av
                root = getattr(av, "root", av)
                reach[id(root)] = root
    live = m.slab.live
    if avcs != live["anon_vma_chain"]:
        _fail(f"{live['anon_vma_chain']} anon_vma_chains allocated but {avcs} on the chains "
              f"of live VMAs (leak)")
    if len(reach) != live["anon_vma"]:
        _fail(f"{live['anon_vma']} anon_vmas allocated but {len(reach)} reachable from live "
              f"VMAs (leak)")
