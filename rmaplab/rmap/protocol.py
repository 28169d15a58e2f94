# SPDX-License-Identifier: GPL-2.0-only
"""The rmap protocol: every place the kernel calls into reverse mapping.

One class per scheme (pte_chain, anonmm, anon_vma, anon_vma_chain, modern)
implements RmapScheme. The VMA layer and the fault path call only these
hooks, so a scheme sees exactly what its kernel saw, and results do not
depend on the scheme. Page hooks take numpy arrays of frames (a whole range
at a time); the shared bookkeeping (mapcount, refcount, page->index) is done
by rmap.core before or after the hook.

Kernel call sites, by hook:
  mm_init / mm_dup / mm_exit      exec_rmap, dup_rmap, exit_rmap (anonmm, 2004)
  vma_prepare                     anon_vma_prepare (first anonymous page, rmap.core)
  vma_fork                        anon_vma_fork (dup_mmap, through rmap.core.anon_vma_fork)
  vma_clone                       anon_vma_clone (split_vma, vma_expand importer, copy_vma)
  vma_unlink                      unlink_anon_vmas (free_pgtables, error paths)
  vma_merge                       anon_vma_merge (a VMA absorbed by its neighbour)
  vma_adjust_begin / _end         anon_vma_interval_tree_pre/post_update_vma
  page_add_new_anon               folio_add_new_anon_rmap (fresh page)
  page_add_anon                   folio_add_anon_rmap_ptes (swap-in, exclusive or not)
  page_dup                        folio_dup_file/anon_rmap at fork (copy_page_range)
  page_remove                     folio_remove_rmap_ptes (zap, COW, unmap)
  page_move                       folio_move_anon_rmap (do_wp_page reuse)
  ptes_moved                      move_ptes (mremap: pte pointers and page->index)
  page_freed                      the last reference to a page went
  needs_private_copy              anonmm's early COW (mremap, swap-in elsewhere)
  referenced_end                  page_referenced_anon's tail (anonmm migration)
  candidates                      the scheme's half of rmap_walk
  walk_groups / walk_plans        batched page_referenced (rmap.walk_plan)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from ..mm_types import MM, VMA, Task
from ..page_alloc import FrameTable
from ..slab import Slab
from ..uapi import Walks


class RmapContext(Protocol):
    """What a scheme reads of the machine state (mm_state.MMState): the
    frames, the slabs, the event counters, and the tasks (for check())."""

    frames: FrameTable
    slab: Slab
    counters: dict[str, int]
    tasks: dict[str, Task]


class WalkStats:
    """What rmap walks visited, cumulatively (docs/trace-format.md `walks`)."""

    __slots__ = ("count", "anon_vmas", "vmas", "ptes", "listed")

    def __init__(self) -> None:
        self.count = 0
        self.anon_vmas = 0
        self.vmas = 0  # VMAs, chain entries or mms examined
        self.ptes = 0
        self.listed = 0  # what a walk that never stops early would examine

    def as_dict(self) -> Walks:
        return {"count": self.count, "anon_vmas": self.anon_vmas, "vmas": self.vmas,
                "ptes": self.ptes, "listed": self.listed}


class RmapScheme:
    """Base class; a hook a scheme does not need is a no-op."""

    name = "base"
    #: vma.anon_vma is this scheme's anon_vma (None exactly when lineage is None)
    uses_anon_vma = False
    #: anon_vma identity mirrors lineage one-to-one within an mm (the checker's
    #: rule); Andrea Arcangeli's 2004 anon_vma is shared by a whole fork family
    anon_vma_mirrors_lineage = True
    #: RmapWalkControl kinds whose rmap_one takes the mm's page_table_lock with
    #: a trylock (pte_chain's try_to_unmap, anonmm's page_referenced too):
    #: counted in counters["trylock"]
    trylock_walks: frozenset[str] = frozenset()

    def __init__(self, m: RmapContext) -> None:
        self.m = m

    # -- mm lifecycle -----------------------------------------------------
    def mm_init(self, mm: MM) -> None:
        """exec_rmap: a new address space (spawn). May raise NoMem."""

    def mm_dup(self, mm: MM, oldmm: MM) -> None:
        """dup_rmap: fork's new mm, before its VMAs are copied. May raise NoMem."""

    def mm_exit(self, mm: MM) -> None:
        """exit_rmap: after exit_mmap."""

    # -- VMA lifecycle ----------------------------------------------------
    def vma_prepare(self, vma: VMA, share: VMA | None) -> None:
        """anon_vma_prepare; share is the neighbour whose anon_vma to reuse."""

    def vma_fork(self, vma: VMA, pvma: VMA) -> None:
        """anon_vma_fork; on NoMem, vma holds nothing (nothing leaked)."""

    def vma_clone(self, dst: VMA, src: VMA) -> None:
        """anon_vma_clone; on NoMem, dst holds nothing it did not hold before."""

    def vma_unlink(self, vma: VMA) -> None:
        """unlink_anon_vmas."""

    def vma_merge(self, vma: VMA, gone: VMA) -> None:
        """anon_vma_merge: gone's range now belongs to vma; drop gone's links."""
        self.vma_unlink(gone)

    def vma_adjust_begin(self, vma: VMA) -> None:
        """Bounds or pgoff of vma are about to change."""

    def vma_adjust_end(self, vma: VMA) -> None:
        """Bounds or pgoff of vma changed."""

    # -- pages --------------------------------------------------------------
    def page_add_new_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        raise NotImplementedError

    def page_add_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                      exclusive: bool) -> None:
        raise NotImplementedError

    def page_dup(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """A PTE for each frame was copied into vma at vpns (fork)."""

    def page_remove(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """The PTEs of vma at vpns no longer map frames."""

    def page_move(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """folio_move_anon_rmap: exclusive pages now belong to vma's anon_vma."""

    def ptes_moved(self, frames: np.ndarray, old: VMA, old_vpns: np.ndarray,
                   new: VMA, new_vpns: np.ndarray) -> None:
        """mremap moved PTEs mapping frames from old_vpns to new_vpns."""

    def page_freed(self, frames: np.ndarray) -> None:
        """The frames' last references went; drop what their mapping holds."""

    def needs_private_copy(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                           moving: bool) -> np.ndarray:
        """Which frames, about to be mapped at vpns of vma, must be copied first
        because the scheme could not find them there (anonmm: page->index is
        the address). moving: the PTE being placed already maps the frame
        (mremap) rather than being new (swap-in). Default: none."""
        return np.zeros(len(frames), bool)

    def referenced_end(self, frame: int, complete: bool) -> None:
        """After page_referenced's walk of frame; complete: every mapping found."""

    # -- walks --------------------------------------------------------------
    def candidates(self, frame: int,
                   st: WalkStats | None) -> Iterator[tuple[VMA | None, int]]:
        """Yield the (vma, vpn) pairs the kernel's walk would examine, in its
        order, charging st (None: the checker's uncharged walk). vma may be
        None (anonmm: an mm with no VMA at the address): a page table walk
        that finds nothing, so no PTE is charged."""
        raise NotImplementedError

    def walk_groups(self, frames: np.ndarray):
        """For batched walks: yield (vmas, frames, indices, interval) groups,
        where vmas is the ordered list every frame of the group would walk,
        and interval says whether VMAs not covering a page are skipped
        unseen (an interval tree) or examined and passed over (a list).
        None: this scheme only walks one frame at a time."""
        return

    def walk_plans(self, frames: np.ndarray):
        """For batched walks of schemes whose walk order differs per frame or is
        too long to step through: yield walk_plan.WalkPlan objects describing
        the walks by their answer (see rmap/walk_plan.py). None: not offered."""

    # -- accounting ---------------------------------------------------------
    def objects(self) -> dict[str, int]:
        return {}

    def rmap_bytes(self) -> dict[str, int]:
        return {"x86_64": 0, "i386": 0}

    def check(self) -> None:
        """Assert the scheme's own invariants (CONFIG_DEBUG_VM)."""
