# SPDX-License-Identifier: GPL-2.0-only
"""Scheme ``modern``: anon_vma_chain as Linux 6.18 has it (mm/rmap.c).

What it adds to the 2010 scheme:
  - anon_vma->root: one lock (the root's rwsem) for a whole fork tree, and
    a page mapped non-exclusively points at the root;
  - the avcs of an anon_vma sit in an interval tree keyed by the VMA's
    pgoff range, so a walk examines only VMAs whose range covers the page;
  - reference counts: an anon_vma lives while it has avcs or children
    (each child holds a reference on the root), not just while its list is
    non-empty;
  - the reuse rule (commit 7a3ef208e662, refined by 2555283eb40d): at fork,
    a VMA takes over an ancestor anon_vma with no active VMAs and fewer
    than two children instead of allocating one, which bounds anon_vmas to
    at most twice the VMAs in fork chains (docs/references.md: Rik van Riel
    <502D42E5.7090403@redhat.com>, 2012, and commit 7a3ef208e662).

Sizes on x86_64 are this machine's /proc/slabinfo object sizes: anon_vma
104, anon_vma_chain 64 (docs/references.md and docs/struct-sizes.md).

The interval tree is modelled by its answer, not its nodes: the walk
examines (and is charged for) exactly the avcs whose range covers the
page, in the tree's in-order order: by the VMA's pgoff, and among equal
pgoffs in insertion order (an equal key goes right). vma_adjust takes a
VMA's avcs out of their trees and puts them back (the interval tree's
pre/post update), so an adjusted VMA goes after its equals; av.head keeps
that insertion order, and a walk sorts it by pgoff (a stable sort).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..mm_types import VM_LOCK_RMAP
from .anon_vma_chain import AnonVma, AnonVmaChainScheme
from .protocol import WalkStats

if TYPE_CHECKING:
    from ..mm_types import VMA

# Bytes: see docs/struct-sizes.md. x86_64 is this machine's /proc/slabinfo
# (anon_vma 96 bytes of fields + SLUB's free pointer kept outside objects of
# a cache with a constructor and SLAB_TYPESAFE_BY_RCU); i386 counted the same way.
SIZES = {
    "x86_64": {"anon_vma": 104, "anon_vma_chain": 64, "vma_fields": 24},
    "i386": {"anon_vma": 56, "anon_vma_chain": 32, "vma_fields": 12},
}


def _pgoff(vma: VMA) -> int:
    return vma.pgoff


class ModernScheme(AnonVmaChainScheme):
    name = "modern"

    def new_root(self, av: AnonVma) -> None:
        av.num_children += 1  # self-parent link for a new root

    def fork_reuses(self, vma: VMA) -> bool:
        """anon_vma_clone's reuse: an ancestor with no VMAs and < 2 children."""
        for avc in vma.avcs:
            av = avc.anon_vma
            if av.num_children < 2 and av.num_active_vmas == 0:
                vma.anon_vma = av
                av.num_active_vmas += 1
                return True
        return False

    def fork_parent(self, av: AnonVma, parent: AnonVma) -> None:
        av.root = parent.root
        av.parent = parent
        parent.root.refcount += 1  # get_anon_vma(root)
        parent.num_children += 1

    def emptied(self, av: AnonVma) -> None:
        """The tree is empty: the parent loses a child, and our reference goes."""
        av.parent.num_children -= 1
        self.put_anon_vma(av)

    def put_anon_vma(self, av: AnonVma) -> None:
        av.refcount -= 1
        if av.refcount == 0:
            root = av.root
            self.anon_vma_free(av)
            if root is not av:
                root.refcount -= 1
                if root.refcount == 0:
                    self.anon_vma_free(root)

    def oldest(self, vma: VMA) -> AnonVma:
        assert vma.anon_vma is not None  # asked only for a VMA with anonymous pages
        return vma.anon_vma.root

    def candidates(self, frame: int, st: WalkStats | None) -> Iterator[tuple[VMA, int]]:
        av = self.m.frames.mapping[frame]
        if av is None or av.freed:
            return
        index = int(self.m.frames.index[frame])
        if st is not None:
            st.anon_vmas += 1  # the root's rwsem
        # the covering VMAs, then in tree order (a stable sort keeps insertion order)
        hits = sorted((avc.vma for avc in av.head
                       if avc.vma.pgoff <= index < avc.vma.pgoff + (avc.vma.end - avc.vma.start)),
                      key=_pgoff)
        if st is not None:
            st.listed += len(hits)
        for vma in hits:
            if st is not None:
                st.vmas += 1
            if vma.flags & VM_LOCK_RMAP:
                continue
            yield vma, vma.start + (index - vma.pgoff)

    interval = True  # the interval tree returns only VMAs covering the page

    def walk_order(self, av: AnonVma) -> list[VMA]:
        """The interval tree's in-order walk: by pgoff, equals in insertion order."""
        return sorted((avc.vma for avc in av.head), key=_pgoff)

    def vma_adjust_end(self, vma: VMA) -> None:
        """anon_vma_interval_tree_post_update_vma: vma's avcs go back into
        their trees, after any equal keys already there."""
        for avc in vma.avcs:
            head = avc.anon_vma.head
            del head[avc]
            head[avc] = None

    def sizes(self) -> dict[str, dict[str, int]]:
        return SIZES

    def keeps_empty(self, av: AnonVma) -> bool:
        return av.refcount > 0  # held by a child anon_vma's root reference
