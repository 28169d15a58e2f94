# SPDX-License-Identifier: GPL-2.0-only
"""Scheme ``anon_vma_chain``: Rik van Riel's 2010 rmap, "[PATCH -mm] change
anon_vma linking to fix multi-process server scalability issue" (linux-mm,
28 January 2010; docs/references.md).

Each VMA that maps anonymous pages links, through anon_vma_chain (avc)
objects, to its own anon_vma and to every anon_vma of the VMA it was forked
from. page->mapping is the anon_vma the page was created in; a walk takes
that anon_vma's lock and visits every VMA on its same_anon_vma list.

As merged, with the fixes the thread and the following weeks made:
  - anon_vma_fork unlinks what anon_vma_clone linked when its own allocation
    fails (Andrew Morton's review: nothing leaks on fork's error path);
  - anon_vma_clone cleans up after itself;
  - do_wp_page reuse moves the page to the faulting VMA's anon_vma
    (page_move_anon_rmap, the thread's second patch);
  - a page mapped non-exclusively (a shared page swapped back in) points at
    the oldest anon_vma of the VMA, so every PTE stays findable;
  - VM_LOCK_RMAP removed, as merged (Config.vm_lock_rmap brings it back,
    for the race study: mmap.dup_anon_vma flags an importer until its
    bounds are set, mmap.unlink_merged flags a VMA a merge removes; walks
    skip flagged VMAs).
An anon_vma is freed when its list becomes empty.

Objects: struct anon_vma {lock, list head}; struct anon_vma_chain {vma,
anon_vma, same_vma, same_anon_vma}. Lock order: mmap_sem -> anon_vma->lock
-> page_table_lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..mm_types import VM_LOCK_RMAP
from .protocol import RmapContext, RmapScheme, WalkStats

if TYPE_CHECKING:
    from ..mm_types import VMA

# Slab object sizes in bytes: see docs/struct-sizes.md (2.6.33 with the 2010
# patch: anon_vma {lock, ksm_refcount, head}; anon_vma_chain {vma, anon_vma,
# same_vma, same_anon_vma}; vm_area_struct's anon_vma_chain and anon_vma).
SIZES = {
    "x86_64": {"anon_vma": 24, "anon_vma_chain": 48, "vma_fields": 24},
    "i386": {"anon_vma": 16, "anon_vma_chain": 24, "vma_fields": 12},
}


class AnonVma:
    """struct anon_vma: the list (head) of avcs of VMAs that may map its pages.

    ``head`` is an insertion-ordered dict used as the same_anon_vma list
    (guarded by this anon_vma's lock; the root's in ``modern``).
    """

    __slots__ = ("head", "root", "parent", "refcount", "num_children", "num_active_vmas",
                 "serial", "freed")

    def __init__(self, serial: int) -> None:
        self.head: dict[Avc, None] = {}
        self.root: AnonVma = self
        self.parent: AnonVma = self
        self.refcount = 1
        self.num_children = 0
        self.num_active_vmas = 0
        self.serial = serial
        self.freed = False

    def __repr__(self) -> str:
        return f"<anon_vma #{self.serial} {len(self.head)} avcs>"


class Avc:
    """struct anon_vma_chain: one (vma, anon_vma) link, on both lists."""

    __slots__ = ("vma", "anon_vma")

    def __init__(self, vma: VMA, anon_vma: AnonVma) -> None:
        self.vma = vma
        self.anon_vma = anon_vma


class AnonVmaPool:
    """The anon_vma slab of a scheme: allocation, freeing, and the set of
    live anon_vmas the checker walks (its size is the live count)."""

    anon_vma_type: type = AnonVma
    m: RmapContext  # set by the scheme that mixes the pool in

    def __init__(self) -> None:
        self._serial = 0
        self.live: dict = {}  # every live anon_vma, for the checker and the counts

    @property
    def nr_anon_vma(self) -> int:
        return len(self.live)

    def anon_vma_alloc(self):
        self.m.slab.alloc("anon_vma")
        self._serial += 1
        av = self.anon_vma_type(self._serial)
        self.live[av] = None
        return av

    def anon_vma_free(self, av) -> None:
        assert not av.head and not av.freed, av
        av.freed = True
        self.m.slab.free("anon_vma")
        del self.live[av]


class AnonVmaChainScheme(AnonVmaPool, RmapScheme):
    name = "anon_vma_chain"
    uses_anon_vma = True

    def __init__(self, m) -> None:
        RmapScheme.__init__(self, m)
        AnonVmaPool.__init__(self)
        self.nr_avc = 0

    # -- allocation ---------------------------------------------------------
    def avc_alloc(self) -> None:
        self.m.slab.alloc("anon_vma_chain")

    def avc_link(self, vma: VMA, av: AnonVma) -> Avc:
        """anon_vma_chain_link: on vma's same_vma list and av's list (tail)."""
        avc = Avc(vma, av)
        vma.avcs.append(avc)
        av.head[avc] = None
        self.nr_avc += 1
        return avc

    def avc_free(self, avc: Avc) -> None:
        self.m.slab.free("anon_vma_chain")
        self.nr_avc -= 1

    # -- VMA hooks --------------------------------------------------------------
    def vma_prepare(self, vma: VMA, share: VMA | None) -> None:
        """anon_vma_prepare: allocate the avc first, then find or make an anon_vma."""
        self.avc_alloc()
        av = share.anon_vma if share is not None else None
        if av is None:
            try:
                av = self.anon_vma_alloc()
            except BaseException:
                self.m.slab.free("anon_vma_chain")
                raise
            self.new_root(av)
        vma.anon_vma = av
        self.avc_link(vma, av)
        av.num_active_vmas += 1

    def new_root(self, av: AnonVma) -> None:
        """Hook for modern: a new anon_vma is its own root."""

    def vma_clone(self, dst: VMA, src: VMA) -> None:
        """anon_vma_clone: link dst to every anon_vma src is linked to.

        On failure it unlinks what it linked (its own cleanup, as in the 2010 patch), and
        dst keeps the anon_vma pointer it had (none for fork, src's otherwise).
        """
        had = dst.anon_vma
        try:
            for pavc in list(src.avcs):
                self.avc_alloc()
                self.avc_link(dst, pavc.anon_vma)
        except BaseException:
            self.vma_unlink(dst)
            dst.anon_vma = had
            raise
        if dst.anon_vma is not None:
            dst.anon_vma.num_active_vmas += 1

    def vma_fork(self, vma: VMA, pvma: VMA) -> None:
        """anon_vma_fork: the parent's anon_vmas, then an anon_vma of our own.

        Charges counters["rmap_fork_objs"] two per avc the child's VMA ends
        with: the avc and the anon_vma it links.
        """
        self._fork(vma, pvma)
        self.m.counters["rmap_fork_objs"] += 2 * len(vma.avcs)

    def _fork(self, vma: VMA, pvma: VMA) -> None:
        vma.anon_vma = None
        if pvma.anon_vma is None:
            return
        self.vma_clone(vma, pvma)
        if self.fork_reuses(vma):
            return
        try:
            av = self.anon_vma_alloc()
            try:
                self.avc_alloc()
            except BaseException:
                self.put_anon_vma(av)
                raise
        except BaseException:
            # The leak Andrew Morton asked about: undo the clone too.
            self.vma_unlink(vma)
            raise
        self.fork_parent(av, pvma.anon_vma)
        av.num_active_vmas += 1
        vma.anon_vma = av
        self.avc_link(vma, av)

    def fork_reuses(self, vma: VMA) -> bool:
        return False

    def fork_parent(self, av: AnonVma, parent: AnonVma) -> None:
        """Hook for modern: root, parent and counts of a forked anon_vma."""

    def put_anon_vma(self, av: AnonVma) -> None:
        self.anon_vma_free(av)

    def vma_unlink(self, vma: VMA) -> None:
        """unlink_anon_vmas: drop every avc of vma; free emptied anon_vmas."""
        if vma.anon_vma is not None:
            vma.anon_vma.num_active_vmas -= 1
            vma.anon_vma = None
        avcs, vma.avcs = vma.avcs, []
        self.m.counters["rmap_exit_objs"] += 2 * len(avcs)  # each avc and its anon_vma
        for avc in avcs:
            av = avc.anon_vma
            del av.head[avc]
            self.avc_free(avc)
            if not av.head:
                self.emptied(av)

    def emptied(self, av: AnonVma) -> None:
        """An anon_vma's list became empty: 2010 frees it at once."""
        self.anon_vma_free(av)

    # -- page hooks -------------------------------------------------------------
    def page_add_new_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        self.m.frames.mapping[frames] = vma.anon_vma

    def page_add_anon(self, frames, vma, vpns, exclusive: bool) -> None:
        """A page swapped back in: exclusive -> our anon_vma, else the oldest."""
        ft = self.m.frames
        for f in frames.tolist():
            if ft.mapping[f] is None or ft.mapping[f].freed:
                ft.mapping[f] = vma.anon_vma if exclusive else self.oldest(vma)

    def oldest(self, vma: VMA) -> AnonVma:
        return vma.avcs[0].anon_vma

    def page_move(self, frames, vma, vpns) -> None:
        self.m.frames.mapping[frames] = vma.anon_vma

    # -- walk ---------------------------------------------------------------------
    def candidates(self, frame: int, st: WalkStats | None) -> Iterator[tuple[VMA, int]]:
        av = self.m.frames.mapping[frame]
        if av is None or av.freed:
            return
        index = int(self.m.frames.index[frame])
        if st is not None:
            st.anon_vmas += 1
            st.listed += len(av.head)
        for avc in list(av.head):
            vma = avc.vma
            if st is not None:
                st.vmas += 1
            if vma.flags & VM_LOCK_RMAP:
                continue  # the 2010 patch's VM_LOCK_RMAP: do not follow this rmap
            yield vma, vma.start + (index - vma.pgoff)

    interval = False  # the 2010 list: every VMA on it is examined

    def walk_order(self, av: AnonVma) -> list[VMA]:
        """The VMAs of av in the order a walk meets them: list order here."""
        return [avc.vma for avc in av.head]

    def walk_groups(self, frames: np.ndarray):
        """Group frames by the anon_vma they point at: one walk order each."""
        ft = self.m.frames
        mapping = ft.mapping[frames]
        groups: dict[int, tuple[AnonVma, list[int]]] = {}
        for j, av in enumerate(mapping.tolist()):
            g = groups.get(id(av))
            if g is None:
                groups[id(av)] = (av, [j])
            else:
                g[1].append(j)
        for av, js in groups.values():
            sel = np.asarray(js, dtype=np.int64)
            f = frames[sel]
            if av is None or av.freed:
                yield [], f, ft.index[f], self.interval, None
            else:
                yield self.walk_order(av), f, ft.index[f], self.interval, av

    # -- accounting -----------------------------------------------------------------
    def objects(self) -> dict[str, int]:
        return {"anon_vma": self.nr_anon_vma, "anon_vma_chain": self.nr_avc}

    def rmap_bytes(self) -> dict[str, int]:
        nvma = self.m.slab.live["vma"]
        return {arch: s["anon_vma"] * self.nr_anon_vma + s["anon_vma_chain"] * self.nr_avc
                + s["vma_fields"] * nvma for arch, s in self.sizes().items()}

    def sizes(self) -> dict[str, dict[str, int]]:
        return SIZES

    def check(self) -> None:
        n = 0
        for av in self.live:
            assert not av.freed
            assert av.head or self.keeps_empty(av), f"{av} is empty but not freed"
            for avc in av.head:
                assert avc.anon_vma is av and avc in avc.vma.avcs
                assert not avc.vma.dead, f"{av} lists a dead VMA {avc.vma}"
                n += 1
        assert n == self.nr_avc, f"avcs on lists {n} != allocated {self.nr_avc}"

    def keeps_empty(self, av: AnonVma) -> bool:
        return False
