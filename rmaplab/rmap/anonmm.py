# SPDX-License-Identifier: GPL-2.0-only
"""Scheme ``anonmm``: Hugh Dickins' 2004 object-based rmap by mm (2.6.6-mm).

Hugh Dickins, "rmap 10 add anonmm rmap" (May 2004; docs/references.md).

An anonymous page can only sit at one address, in the group of mms forked
from one exec that might share it. So each mm gets a struct anonmm
(exec_rmap at spawn, dup_rmap at fork, exit_rmap at mmput), all anonmms of
one exec are linked in a bundle behind its head, and a page records the
anonmm of the mm it was faulted into (page->mapping) and its virtual
address (page->index). A walk takes the head's lock, tries the indicated
mm first, then the rest of the bundle's list from there, round to the
head and beyond, skipping mms that are gone or have no rss; in each mm it
looks the page up at its address (find_vma, then the page table).
walks.vmas counts anonmms examined, walks.anon_vmas the bundle locks, and
page_referenced_one and try_to_unmap_one both take the mm's page_table_lock
with a trylock (counters["trylock"]; that patch's ``failed``).

An anonmm counts one reference for its mm, one per page pointing at it,
and for the head one of its own and one per other anonmm of the bundle;
it is freed when the last goes (exit_rmap, or clear_page_anon when a page
loses its last mapping). A page indicated by an extinct mm migrates, at
page_referenced, to the first mm of the list in which the walk found it, so
that extinct anonmms can go.

page->index being the address is the scheme's weakness: a page shared with
another mm cannot be found once mremap has moved it in one of them. As
Hugh Dickins' mremap follow-up did (2004; docs/references.md),
needs_private_copy tells the generic move and swap-in paths to give such a
page a private copy (an early COW) instead; docs/divergences.md lists the difference this makes.

Invariants (check()): a mapped page points at a live anonmm of the bundle
of every mm that maps it, at its address; an unmapped page points at none;
each anonmm's count is as above; the head's list holds exactly the live
anonmms of its bundle.

Objects: struct anonmm {count, lock, mm, head, list}; mm_struct gains
anonmm. Lock order: mmap_sem -> the head anonmm's lock -> page_table_lock
(trylocked by the walks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..mm_types import PTE_PRESENT, PTE_SHIFT
from .protocol import RmapScheme, WalkStats
from .walk_plan import WalkPlan, group_by, literal_plan, prefix_counts, vma_of

if TYPE_CHECKING:
    from ..mm_types import MM, VMA

# Bytes: see docs/struct-sizes.md (the 2004 patch's struct anonmm; the pointer
# mm_struct gains).
SIZES = {
    "x86_64": {"anonmm": 40, "mm_field": 8},
    "i386": {"anonmm": 24, "mm_field": 4},
}


class Anonmm:
    """struct anonmm: one per mm, bundled behind the head of its exec.

    ``members`` (on the head only) is the bundle's list, head first, in
    list_add_tail order, guarded by the head's lock.
    """

    __slots__ = ("count", "head", "members", "mm", "serial")

    def __init__(self, mm: MM, serial: int) -> None:
        self.count = 0
        self.mm: MM | None = mm
        self.head: Anonmm = self
        self.members: dict[Anonmm, None] = {}
        self.serial = serial

    def __repr__(self) -> str:
        return f"<anonmm #{self.serial} mm={None if self.mm is None else self.mm.id} " \
               f"count={self.count}>"


def anonmm_of(mm: MM) -> Anonmm:
    """mm->anonmm (the MM slot is typed loosely: it belongs to this scheme)."""
    am = mm.anonmm
    assert isinstance(am, Anonmm), f"mm {mm.id} has no anonmm"
    return am


class AnonmmScheme(RmapScheme):
    name = "anonmm"
    trylock_walks = frozenset({"referenced", "unmap"})

    def __init__(self, m) -> None:
        super().__init__(m)
        self.nr_anonmm = 0
        self._serial = 0
        self.live: dict[Anonmm, None] = {}
        #: pages needs_private_copy said must be copied (counted each time it
        #: is asked): where anonmm's results leave modern's (divergences.md 7)
        self.copies_asked = 0

    # -- creation and destruction (exec_rmap, dup_rmap, exit_rmap) ----------------
    def _alloc(self, mm: MM) -> Anonmm:
        self.m.slab.alloc("anonmm")
        self._serial += 1
        am = Anonmm(mm, self._serial)
        self.nr_anonmm += 1
        self.live[am] = None
        return am

    def _free(self, am: Anonmm) -> None:
        self.m.slab.free("anonmm")
        self.nr_anonmm -= 1
        del self.live[am]

    def mm_init(self, mm: MM) -> None:
        """exec_rmap: a new bundle, this mm's anonmm its head."""
        am = self._alloc(mm)
        am.count = 2  # ref by mm and head
        am.members[am] = None
        mm.anonmm = am  # type: ignore[assignment]  # mm_types leaves the slot untyped

    def mm_dup(self, mm: MM, oldmm: MM) -> None:
        """dup_rmap: the child's anonmm joins the tail of the parent's bundle."""
        hd = anonmm_of(oldmm).head
        am = self._alloc(mm)
        am.count = 1  # ref by mm
        am.head = hd
        hd.count += 1  # ref by anonmm's head
        hd.members[am] = None
        mm.anonmm = am  # type: ignore[assignment]
        self.m.counters["rmap_fork_objs"] += 2  # the new anonmm and the head it joins

    def mm_exit(self, mm: MM) -> None:
        """exit_rmap: the mm goes; its anonmm stays while pages point at it."""
        am = anonmm_of(mm)
        hd = am.head
        mm.anonmm = None
        am.mm = None
        am.count -= 1
        # its anonmm, and the head when unlinking from it or freeing it
        self.m.counters["rmap_exit_objs"] += 1 + (am is not hd and (am.count == 0
                                                                   or hd.count == 1))
        if am.count == 0:
            assert am is not hd, "exit_rmap: the head's own reference went"
            del hd.members[am]
            self._free(am)
            hd.count -= 1
            assert hd.count > 0, "exit_rmap: the head lost its own reference"
        if hd.count == 1:
            assert hd.mm is None and list(hd.members) == [hd], hd
            hd.members.clear()
            self._free(hd)

    def free_anonmm(self, am: Anonmm) -> None:
        """free_anonmm: the last page of an extinct mm's anonmm went."""
        hd = am.head
        assert am.mm is None and am is not hd, am
        del hd.members[am]
        hd.count -= 1
        assert hd.count > 0, "free_anonmm: the head lost its own reference"
        self._free(am)

    def _put(self, counts: Counter) -> None:
        """Drop page references (clear_page_anon), freeing what reaches zero."""
        for am, n in counts.items():
            am.count -= n
            if am.count == 0:
                self.free_anonmm(am)

    # -- page hooks --------------------------------------------------------------
    def page_add_new_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """page_add_anon_rmap of a fresh page: this mm's anonmm, at its address."""
        am = anonmm_of(vma.mm)
        ft = self.m.frames
        ft.mapping[frames] = am
        ft.index[frames] = vpns
        am.count += len(frames)

    def page_add_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                      exclusive: bool) -> None:
        """page_add_anon_rmap: only the first mapping sets mapping and index."""
        ft = self.m.frames
        first = ft.mapcount[frames] == 1
        if first.any():
            self.page_add_new_anon(frames[first], vma, vpns[first])
        again = ~first
        assert (ft.index[frames[again]] == vpns[again]).all(), \
            "anonmm: a page mapped at a second address (the caller should have copied it)"

    def page_remove(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """page_remove_rmap: a page whose last mapping went clears its anonmm."""
        ft = self.m.frames
        gone = frames[ft.mapcount[frames] == 0]
        if len(gone):
            counts = Counter(ft.mapping[gone].tolist())
            ft.mapping[gone] = None
            self._put(counts)

    def page_freed(self, frames: np.ndarray) -> None:
        ft = self.m.frames
        held = frames[np.fromiter((a is not None for a in ft.mapping[frames].tolist()), bool,
                                  len(frames))]
        assert not len(held), "a freed page still points at an anonmm"

    def ptes_moved(self, frames: np.ndarray, old: VMA, old_vpns: np.ndarray,
                   new: VMA, new_vpns: np.ndarray) -> None:
        """mremap: a page mapped only here follows its PTE; a shared one keeps
        its address for its other mms and is copied by the caller next."""
        ft = self.m.frames
        own = ft.mapcount[frames] == 1
        ft.index[frames[own]] = new_vpns[own]

    def needs_private_copy(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                           moving: bool) -> np.ndarray:
        """A page mapped by another PTE at another address cannot be found at
        vpns too (Hugh Dickins' mremap follow-up, 2004)."""
        ft = self.m.frames
        others = ft.mapcount[frames].astype(np.int64) - (1 if moving else 0)
        need = (others > 0) & (ft.index[frames] != vpns)
        self.copies_asked += int(np.count_nonzero(need))
        return need

    # -- walks -----------------------------------------------------------------
    def candidates(self, frame: int, st: WalkStats | None) -> Iterator[tuple[VMA | None, int]]:
        """page_referenced_anon / try_to_unmap_anon: the indicated mm first,
        then the rest of the bundle's list from there.

        Cost: one step per anonmm of the bundle until the countdown ends
        (charges walks.vmas), one lock (the head's; walks.anon_vmas).
        """
        ft = self.m.frames
        am = ft.mapping[frame]
        if am is None:
            return
        vpn = int(ft.index[frame])
        ring = list(am.head.members)
        if st is not None:
            st.anon_vmas += 1
            st.listed += len(ring)
        s = ring.index(am)
        for k in range(len(ring)):
            a = ring[(s + k) % len(ring)]
            if st is not None:
                st.vmas += 1
            mm = a.mm
            if mm is None or not mm.rss:
                continue
            yield mm.find_vma(vpn), vpn

    def referenced_end(self, frame: int, complete: bool) -> None:
        """page_referenced_anon's migrate: off an extinct mm, to the first mm
        the walk found the page in."""
        ft = self.m.frames
        am = ft.mapping[frame]
        if not complete or am is None or am.mm is not None:
            return
        new = self._first_holder(frame, am)
        if new is None:
            return
        ft.mapping[frame] = new
        new.count += 1
        self._put(Counter({am: 1}))

    def _first_holder(self, frame: int, am: Anonmm) -> Anonmm | None:
        ft = self.m.frames
        vpn = int(ft.index[frame])
        ring = list(am.head.members)
        s = ring.index(am)
        for k in range(1, len(ring)):
            a = ring[(s + k) % len(ring)]
            mm = a.mm
            if mm is None or not mm.rss:
                continue
            vma = mm.vma_lookup(vpn)
            if vma is not None:
                pte = int(vma.pt[vpn - vma.start])
                if pte & PTE_PRESENT and pte >> PTE_SHIFT == frame:
                    return a
        return None

    def walk_plans(self, frames: np.ndarray):
        """One plan per bundle: its mms' page tables are the index. A bundle
        with a page of an extinct mm is walked literally (the page may
        migrate, and the list may lose that anonmm for the pages after it)."""
        ft = self.m.frames
        mapping = ft.mapping[frames].tolist()
        heads = [a.head if a is not None else None for a in mapping]
        for hd, js in group_by(heads).values():
            f = frames[np.asarray(js, np.int64)]
            if hd is None:
                yield WalkPlan(frames=f, listed=np.zeros(len(f), np.int64))
                continue
            ams = [mapping[j] for j in js]
            if any(a.mm is None for a in ams):
                yield literal_plan(f)
                continue
            yield self._plan(hd, f, ams)  # type: ignore[arg-type]

    def _plan(self, hd: Anonmm, f: np.ndarray, ams: list[Anonmm]) -> WalkPlan:
        ft = self.m.frames
        ring = list(hd.members)
        nring = len(ring)
        rpos = {id(a): r for r, a in enumerate(ring)}
        start = np.fromiter((rpos[id(a)] for a in ams), np.int64, len(ams))
        vpn = ft.index[f]
        jloc = np.full(ft.next_unused, -1, np.int64)
        jloc[f] = np.arange(len(f))
        alive = np.fromiter((a.mm is not None and a.mm.rss > 0 for a in ring), bool, nring)
        vmas: list[VMA] = []
        per_mm: list[list[VMA]] = []
        hj, hp, hv, hi = [], [], [], []
        for r, a in enumerate(ring):
            mm_vmas = list(a.mm.vmas) if a.mm is not None and alive[r] else []
            per_mm.append(mm_vmas)
            for vma in mm_vmas:
                pt = vma.pt
                idx = np.flatnonzero(pt & PTE_PRESENT)
                fr = pt[idx] >> PTE_SHIFT
                keep = (fr != 0) & (fr < len(jloc))
                idx, fr = idx[keep], fr[keep]
                jj = jloc[fr]
                keep = jj >= 0
                idx, jj = idx[keep], jj[keep]
                keep = vma.start + idx == vpn[jj]  # the walk looks at the page's address
                idx, jj = idx[keep], jj[keep]
                hj.append(jj)
                hi.append(idx)
                hp.append((r - start[jj]) % nring)
                hv.append(np.full(len(jj), len(vmas), np.int64))
                vmas.append(vma)

        def covers(x: np.ndarray) -> np.ndarray:
            out = np.zeros((len(x), nring), bool)
            for r in np.flatnonzero(alive).tolist():
                out[:, r] = vma_of(per_mm[r], x)[1]
            return out

        def trylocks(x: np.ndarray) -> np.ndarray:
            return np.broadcast_to(alive, (len(x), nring))

        def costs(j: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            s = start[j]
            return (prefix_counts(covers, vpn[j], k, s),
                    prefix_counts(trylocks, np.zeros(len(j), np.int64), k, s))

        empty = np.zeros(0, np.int64)
        return WalkPlan(frames=f, listed=np.full(len(f), nring, np.int64), locks=1, vmas=vmas,
                        hit_j=np.concatenate(hj) if hj else empty,
                        hit_pos=np.concatenate(hp) if hp else empty,
                        hit_vid=np.concatenate(hv) if hv else empty,
                        hit_i=np.concatenate(hi) if hi else empty, costs=costs)

    # -- accounting ------------------------------------------------------------
    def objects(self) -> dict[str, int]:
        return {"anonmm": self.nr_anonmm}

    def rmap_bytes(self) -> dict[str, int]:
        nmm = self.m.slab.live["mm"]
        return {arch: s["anonmm"] * self.nr_anonmm + s["mm_field"] * nmm
                for arch, s in SIZES.items()}

    def check(self) -> None:
        ft = self.m.frames
        live = ft.allocated()
        maps = ft.mapping[live].tolist()
        mapped = ft.mapcount[live] > 0
        refs: Counter = Counter()
        for f, a, on in zip(live.tolist(), maps, mapped.tolist()):
            if on:
                assert a is not None and a in self.live, f"frame {f}: mapped, anonmm {a}"
                refs[a] += 1
            else:
                assert a is None, f"frame {f}: unmapped but points at {a}"
        for a in self.live:
            hd = a.head
            assert hd in self.live and a in hd.members, f"{a} is not on a live bundle"
            want = (a.mm is not None) + refs[a] + (len(a.members) if a is hd else 0)
            assert a.count == want, f"{a}: count {a.count}, references {want}"
            if a is hd:
                assert all(x.head is a for x in a.members), f"{a}: a member of another bundle"
        for t in self.m.tasks.values():
            if t.mm is None:
                continue
            am = t.mm.anonmm
            assert am is not None and am.mm is t.mm and am in self.live, \
                f"task {t.name}: anonmm {am}"
        assert self.nr_anonmm == len(self.live) == self.m.slab.live["anonmm"]
