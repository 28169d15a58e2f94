# SPDX-License-Identifier: GPL-2.0-only
"""Scheme ``anon_vma``: Andrea Arcangeli's 2004 object-based rmap (2.6.7-2.6.33).

The scheme Rik van Riel's anon_vma_chain patch (January 2010) replaced.
One anon_vma serves a whole family of VMAs:
anon_vma_prepare gives a VMA its anon_vma at the first anonymous page (a
neighbour's, through find_mergeable_anon_vma, else a new one); fork links
the child's copy of each VMA into the parent VMA's anon_vma list (the same
anon_vma, no new one); split, copy_vma (mremap) and a merge's importer join
the list of the VMA they come from; a VMA leaves the list when it is freed
or merged away, and the anon_vma is freed when its list empties.
page->mapping is the family's anon_vma and page->index the linear page
index, so a page of any VMA of the family is found by walking the list.

The walk takes the anon_vma's lock and examines every VMA on the list;
VMAs whose range does not cover the page's index are examined and passed
over without a PTE being looked at. That is the cost the anon_vma_chain patch describes: a
thousand children that each COWed a thousand pages leave a million pages in
one anon_vma, each mapped by one of a thousand VMAs on its list.
walk_plans gives page_referenced_batch the same answer and charges without
stepping through the list (rmap/walk_plan.py).

Invariants (check()): a VMA is on its anon_vma's list exactly when
vma.anon_vma is that anon_vma; every listed VMA is live; no live anon_vma
has an empty list. The checker cannot ask anon_vma identity to mirror
lineage (a forked child shares its parent's anon_vma, while its lineage,
the anon_vma a 6.18 kernel would give it, is its own): anon_vma_mirrors_
lineage is False, and debug_vm then only asks that VMAs sharing a lineage
share the anon_vma.

Objects: struct anon_vma {lock, list head}; vm_area_struct gains
anon_vma_node and anon_vma. Lock order: mmap_sem -> anon_vma->lock ->
mm->page_table_lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..mm_types import PTE_PRESENT, PTE_SHIFT
from .anon_vma_chain import AnonVmaPool
from .protocol import RmapScheme, WalkStats
from .walk_plan import WalkPlan, group_by, prefix_counts

if TYPE_CHECKING:
    from ..mm_types import VMA

# Bytes: see docs/struct-sizes.md (Linux 2.6.9 struct anon_vma; the two
# fields vm_area_struct gains).
SIZES = {
    "x86_64": {"anon_vma": 24, "vma_fields": 24},
    "i386": {"anon_vma": 12, "vma_fields": 12},
}


class AnonVma2004:
    """struct anon_vma (2004): the list (head) of the family's VMAs.

    ``head`` is an insertion-ordered dict used as the list (list_add_tail),
    guarded by this anon_vma's lock.
    """

    __slots__ = ("freed", "head", "serial")

    def __init__(self, serial: int) -> None:
        self.head: dict[VMA, None] = {}
        self.serial = serial
        self.freed = False

    def __repr__(self) -> str:
        return f"<anon_vma(2004) #{self.serial} {len(self.head)} vmas>"


class AnonVmaScheme(AnonVmaPool, RmapScheme):
    name = "anon_vma"
    uses_anon_vma = True
    anon_vma_mirrors_lineage = False
    anon_vma_type = AnonVma2004

    def __init__(self, m) -> None:
        RmapScheme.__init__(self, m)
        AnonVmaPool.__init__(self)

    @staticmethod
    def anon_vma_link(vma: VMA, av: AnonVma2004) -> None:
        """__anon_vma_link: vma joins the tail of av's list."""
        vma.anon_vma = av  # type: ignore[assignment]  # the slot is the scheme's
        av.head[vma] = None

    # -- VMA hooks -------------------------------------------------------------
    def vma_prepare(self, vma: VMA, share: VMA | None) -> None:
        """anon_vma_prepare: a neighbour's anon_vma, else a new one."""
        av = share.anon_vma if share is not None else None
        if av is None:
            av = self.anon_vma_alloc()
        self.anon_vma_link(vma, av)

    def vma_fork(self, vma: VMA, pvma: VMA) -> None:
        """dup_mmap's anon_vma_link: the child's VMA joins the parent's list."""
        vma.anon_vma = None
        if pvma.anon_vma is not None:
            self.anon_vma_link(vma, pvma.anon_vma)
            self.m.counters["rmap_fork_objs"] += 1  # the family's anon_vma

    def vma_clone(self, dst: VMA, src: VMA) -> None:
        """split_vma, copy_vma, vma_adjust's importer: join src's list."""
        if src.anon_vma is not None:
            self.anon_vma_link(dst, src.anon_vma)

    def vma_unlink(self, vma: VMA) -> None:
        """anon_vma_unlink: leave the list; free the anon_vma once it is empty."""
        av = vma.anon_vma
        vma.anon_vma = None
        if av is None or vma not in av.head:
            return
        del av.head[vma]
        self.m.counters["rmap_exit_objs"] += 1
        if not av.head:
            self.anon_vma_free(av)

    # -- page hooks --------------------------------------------------------------
    def page_add_new_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """page_add_anon_rmap of a new page: page->mapping = vma->anon_vma."""
        self.m.frames.mapping[frames] = vma.anon_vma

    def page_add_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                      exclusive: bool) -> None:
        """A page swapped back in keeps its family's anon_vma while it lives."""
        ft = self.m.frames
        for f in frames.tolist():
            av = ft.mapping[f]
            if av is None or av.freed:
                ft.mapping[f] = vma.anon_vma

    # -- walks -----------------------------------------------------------------
    def candidates(self, frame: int, st: WalkStats | None) -> Iterator[tuple[VMA | None, int]]:
        """page_referenced_anon / try_to_unmap_anon: every VMA on the list.

        Cost: one step per VMA on the anon_vma's list (charges walks.vmas),
        one anon_vma lock (walks.anon_vmas).
        """
        av = self.m.frames.mapping[frame]
        if av is None or av.freed:
            return
        index = int(self.m.frames.index[frame])
        if st is not None:
            st.anon_vmas += 1
            st.listed += len(av.head)
        for vma in list(av.head):
            if st is not None:
                st.vmas += 1
            yield vma, vma.start + (index - vma.pgoff)

    def walk_plans(self, frames: np.ndarray):
        """One plan per anon_vma: its VMAs' page tables are the index."""
        ft = self.m.frames
        groups = group_by(ft.mapping[frames].tolist())
        jglob = np.full(ft.next_unused, -1, np.int64)
        jglob[frames] = np.arange(len(frames))
        gid = np.zeros(len(frames), np.int64)
        local = np.zeros(len(frames), np.int64)
        for g, (_, js) in enumerate(groups.values()):
            gid[js] = g
            local[js] = np.arange(len(js))
        for g, (av, js) in enumerate(groups.values()):
            f = frames[np.asarray(js, np.int64)]
            if av is None or av.freed:  # type: ignore[attr-defined]
                yield WalkPlan(frames=f, listed=np.zeros(len(f), np.int64))
                continue
            yield self._plan(av, f, g, jglob, gid, local)  # type: ignore[arg-type]

    def _plan(self, av: AnonVma2004, f: np.ndarray, g: int, jglob: np.ndarray,
              gid: np.ndarray, local: np.ndarray) -> WalkPlan:
        ft = self.m.frames
        vmas = list(av.head)
        index = ft.index[f]
        hj, hp, hi = [], [], []
        for p, vma in enumerate(vmas):
            pt = vma.pt
            idx = np.flatnonzero(pt & PTE_PRESENT)
            fr = pt[idx] >> PTE_SHIFT
            keep = fr != 0
            idx, fr = idx[keep], fr[keep]
            fr_ok = fr < len(jglob)
            idx, fr = idx[fr_ok], fr[fr_ok]
            jj = jglob[fr]
            keep = jj >= 0
            keep[keep] = gid[jj[keep]] == g
            idx, jj = idx[keep], local[jj[keep]]
            keep = vma.pgoff + idx == index[jj]  # the PTE the walk looks at
            hj.append(jj[keep])
            hi.append(idx[keep])
            hp.append(np.full(int(np.count_nonzero(keep)), p, np.int64))
        pg0 = np.fromiter((v.pgoff for v in vmas), np.int64, len(vmas))
        pg1 = pg0 + np.fromiter((v.end - v.start for v in vmas), np.int64, len(vmas))

        def covers(x: np.ndarray) -> np.ndarray:
            return (pg0[None, :] <= x[:, None]) & (x[:, None] < pg1[None, :])

        def costs(j: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return prefix_counts(covers, index[j], k), np.zeros(len(j), np.int64)

        hit_pos = np.concatenate(hp) if hp else np.zeros(0, np.int64)
        return WalkPlan(frames=f, listed=np.full(len(f), len(vmas), np.int64), locks=1,
                        vmas=vmas, hit_j=np.concatenate(hj) if hj else hit_pos,
                        hit_pos=hit_pos, hit_vid=hit_pos,
                        hit_i=np.concatenate(hi) if hi else hit_pos, costs=costs)

    # -- accounting ------------------------------------------------------------
    def objects(self) -> dict[str, int]:
        return {"anon_vma": self.nr_anon_vma}

    def rmap_bytes(self) -> dict[str, int]:
        nvma = self.m.slab.live["vma"]
        return {arch: s["anon_vma"] * self.nr_anon_vma + s["vma_fields"] * nvma
                for arch, s in SIZES.items()}

    def check(self) -> None:
        for av in self.live:
            assert not av.freed
            assert av.head, f"{av} is empty but not freed"
            for vma in av.head:
                assert vma.anon_vma is av, f"{vma} is on {av}'s list but points at {vma.anon_vma}"
                assert not vma.dead, f"{av} lists a dead VMA {vma}"
        for task in self.m.tasks.values():
            for vma in task.mm.vmas if task.mm is not None else ():
                av = vma.anon_vma
                assert av is None or vma in av.head, f"{vma} points at {av} but is not listed"
        assert self.nr_anon_vma == self.m.slab.live["anon_vma"]
