# SPDX-License-Identifier: GPL-2.0-only
"""Scheme variants buggy on purpose: the code as posted, before review fixed it.

``anon_vma_chain_posted``: Rik van Riel's "[PATCH -mm] change anon_vma
linking to fix multi-process server scalability issue" (linux-mm, 28 January
2010) as posted, with three things its thread and the following weeks
changed (docs/posted.md):
  - anon_vma_prepare links its avc at the head of the anon_vma's list
    (list_add), where anon_vma_chain_link links at the tail: a VMA that
    borrows its neighbour's anon_vma is walked first;
  - the first mapping of a page read back from swap points page->mapping at
    the faulting VMA's own anon_vma, shared or not, so the other PTEs of a
    page still shared with a parent are out of reach of every walk;
  - anon_vma_fork's error path does not undo anon_vma_clone: the avcs of the
    VMA dup_mmap frees stay on the parent's anon_vmas (Andrew Morton's review,
    29 January 2010).

``modern_degree``: modern with the single anon_vma->degree counter of commit
7a3ef208e662 ("mm: prevent endless growth of anon_vma hierarchy", Konstantin
Khlebnikov, 2015), before commit 2555283eb40d ("mm/rmap: Fix
anon_vma->degree ambiguity leading to double-reuse", Jann Horn, 2022). One
counter holds child anon_vmas and VMAs together, so anon_vma_clone may take
over a leaf that a VMA still holds as its own.

Neither is in rmaplab.rmap.SCHEMES nor in ``--schemes all``; the invariant
checker catches each bug (tests/test_posted.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .anon_vma_chain import AnonVma, AnonVmaChainScheme
from .modern import ModernScheme

if TYPE_CHECKING:
    from ..mm_types import VMA


class AnonVmaChainPostedScheme(AnonVmaChainScheme):
    name = "anon_vma_chain_posted"

    def vma_prepare(self, vma: VMA, share: VMA | None) -> None:
        """anon_vma_prepare as posted: the new avc goes to the head of the list."""
        super().vma_prepare(vma, share)
        avc = vma.avcs[-1]
        av = avc.anon_vma
        del av.head[avc]
        av.head = {avc: None, **av.head}

    def page_add_anon(self, frames, vma, vpns, exclusive: bool) -> None:
        """page_add_anon_rmap as posted: the first mapping sets vma->anon_vma."""
        ft = self.m.frames
        for f in frames.tolist():
            if ft.mapcount[f] == 1 or ft.mapping[f] is None or ft.mapping[f].freed:
                ft.mapping[f] = vma.anon_vma

    def vma_fork(self, vma: VMA, pvma: VMA) -> None:
        """anon_vma_fork as posted: a failure after the clone returns ENOMEM
        with the cloned avcs still linked (dup_mmap then frees the VMA)."""
        vma.anon_vma = None
        if pvma.anon_vma is None:
            return
        self.vma_clone(vma, pvma)
        av = self.anon_vma_alloc()  # NoMem here leaves the clone's avcs behind
        try:
            self.avc_alloc()
        except BaseException:
            self.anon_vma_free(av)
            raise
        av.num_active_vmas += 1
        vma.anon_vma = av
        self.avc_link(vma, av)


class ModernDegreeScheme(ModernScheme):
    name = "modern_degree"

    def __init__(self, m) -> None:
        super().__init__(m)
        self.fork_source: VMA | None = None  # the parent VMA anon_vma_fork copies

    def degree(self, av: AnonVma) -> int:
        """anon_vma->degree: child anon_vmas (a root counts itself) plus the
        VMAs holding av as their anon_vma, in one number."""
        return av.num_children + av.num_active_vmas

    def fork_reuses(self, vma: VMA) -> bool:
        """anon_vma_clone's reuse of 7a3ef208e662: not the parent VMA's own
        anon_vma, and degree below two ("no vma and only one child")."""
        own = self.fork_source.anon_vma if self.fork_source is not None else None
        for avc in vma.avcs:
            av = avc.anon_vma
            if av is not own and self.degree(av) < 2:
                vma.anon_vma = av
                av.num_active_vmas += 1
                return True
        return False

    def vma_fork(self, vma: VMA, pvma: VMA) -> None:
        """anon_vma_fork, remembering pvma for the reuse rule's own-anon_vma test."""
        self.fork_source = pvma
        try:
            super().vma_fork(vma, pvma)
        finally:
            self.fork_source = None
