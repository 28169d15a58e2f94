# SPDX-License-Identifier: GPL-2.0-only
"""Rmap walks run half-way through VMA surgery: the VM_LOCK_RMAP race.

What it models: Rik van Riel removed VM_LOCK_RMAP arguing that a walk that
runs while a VMA is half set up or torn down cannot miss a PTE (the other
VMA of a split still covers it); Nick Piggin objected that invalidations
use rmap too and must find every PTE. Here every step boundary of the
model's VMA surgery (Machine.surgery_point, called from mmap.py) runs an
uncharged full rmap walk (rmap.core.find_mappings) of every page the mm
maps, and counts the PTEs that exist but were not found. A miss is harmless
for page_referenced (a reference goes unseen) and wrong for try_to_unmap,
migration or an invalidation (a mapping is left behind).

What "a PTE exists" means here: the kernel keeps page tables per mm, keyed
by address, and split and merge never touch them; the model keeps one
array per VMA (vma.pt) and reshapes those arrays during surgery, so
half-way through, an array can be missing (a VMA just duplicated), too
long, or not yet aligned with its VMA's bounds. So the truth is the mm's
page table taken before the operation (split and merge do not change it),
and at each boundary the study lays it over every VMA of the mm and every
VMA the surgery names, according to each VMA's bounds at that instant, runs
the walks, then puts the model's own arrays back. A PTE is then found
exactly when the walk reaches a VMA of its mm whose current bounds cover
its address, as in the kernel.

Which boundaries a walk can reach depends on the locks of the scheme's
kernel (LOCKED below): 6.18 does the bounds changes between vma_prepare and
vma_complete with the root anon_vma locked for writing; 2.6.32's vma_adjust
held the anon_vma lock across them; 2.6.34 as merged (anon_vma_chain without
VM_LOCK_RMAP) held no lock a walk takes. misses_open counts only the
boundaries the scheme's walk can reach; misses_any counts all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..consts import PAGE_SIZE, WINDOW_START
from ..machine import Config, Machine
from ..mm_types import MM, PTE_PRESENT, PTE_SHIFT, VMA
from ..rmap.core import find_mappings

#: Boundaries at which the surgery holds the lock the scheme's walks take.
_PREPARE_TO_COMPLETE = frozenset({
    "vma_adjust:begin", "vma_adjust:bounds", "split_vma:adjusted", "merge_left:mid_shrunk",
    "merge_left:prev_grown", "merge_right:next_grown", "merge_right:mid_shrunk"})
LOCKED: dict[str, frozenset[str]] = {
    "modern": _PREPARE_TO_COMPLETE,
    # 2.6.32 vma_adjust: anon_vma->lock from before the bounds change until
    # after the removed VMA left the list (__anon_vma_merge)
    "anon_vma": _PREPARE_TO_COMPLETE | {"remove_merged:unlinked"},
    "anon_vma_chain": frozenset(),  # 2.6.34 as merged: vma_adjust takes no anon_vma lock
    # 2.6.6 and 2.5 find the VMA with find_vma under a trylocked
    # page_table_lock; whether their surgery held that lock across the tree
    # update is not modelled, so every boundary counts as reachable
    "anonmm": frozenset(),
    "pte_chain": frozenset(),
}


@dataclass(slots=True)
class Boundary:
    """One surgery boundary reached, and what the walks found there."""

    scenario: str
    name: str
    ptes: int
    missed: int
    open: bool  # a walk of this scheme can run here


@dataclass(slots=True)
class RaceStudy:
    """Hooks a Machine's surgery points and records each boundary."""

    m: Machine
    mm: MM
    truth: dict[int, int]  # vpn -> frame, the mm's present anonymous PTEs
    scenario: str
    locked: frozenset[str]
    seen: list[Boundary] = field(default_factory=list)

    def __call__(self, name: str, vmas: tuple[VMA, ...]) -> None:
        mm = self.mm
        lay: dict[int, VMA] = {id(v): v for v in mm.vmas}
        for v in vmas:
            if v.mm is mm and not v.dead:
                lay.setdefault(id(v), v)
        saved = [(v, v.pt) for v in lay.values()]
        try:
            for v in lay.values():
                pt = np.zeros(v.end - v.start, np.int64)
                for i, vpn in enumerate(range(v.start, v.end)):
                    f = self.truth.get(vpn)
                    if f is not None:
                        pt[i] = (f << PTE_SHIFT) | PTE_PRESENT
                v.pt = pt
            missed = 0
            by_frame: dict[int, list[int]] = {}
            for vpn, f in self.truth.items():
                by_frame.setdefault(f, []).append(vpn)
            for f, vpns in by_frame.items():
                found = {p for v, p in find_mappings(self.m, f) if v.mm is mm}
                missed += sum(1 for vpn in vpns if vpn not in found)
        finally:
            for v, pt in saved:
                v.pt = pt
        self.seen.append(Boundary(self.scenario, name, len(self.truth), missed,
                                  name not in self.locked))


def mm_truth(mm: MM) -> dict[int, int]:
    """The mm's present anonymous PTEs (vpn -> frame), from consistent arrays."""
    out: dict[int, int] = {}
    for v in mm.vmas:
        pt = v.pt
        idx = np.flatnonzero((pt & PTE_PRESENT) != 0)
        frames = pt[idx] >> PTE_SHIFT
        for i, f in zip(idx.tolist(), frames.tolist()):
            if f:
                out[v.start + i] = f
    return out


# -- scenarios: (setup, surgery), both on a machine with a parent "p" ------------------

A = WINDOW_START


def _family(m: Machine, pages: int) -> None:
    """A parent that wrote its VMA, a child that COWed the lower half: pages
    on the parent's anon_vma and on the child's."""
    m.spawn("p")
    m.mmap("p", A, pages, "rw")
    m.write("p", A, pages, 1)
    m.fork("p", "c")
    m.write("c", A, pages // 2, 2)


def _at(k: int) -> int:
    return A + k * PAGE_SIZE


Scenario = tuple[Callable[[Machine, int], None], Callable[[Machine, int], None]]


def _importer_setup(m: Machine, n: int) -> None:
    # [0, n) never written (no anon_vma), [n, 2n) mlocked and written. The
    # kernel imports only from a VMA with a single anon_vma
    # (is_mergeable_anon_vma), so this one is not forked: "c" is alone.
    m.spawn("c")
    m.mmap("c", A, 2 * n, "rw")
    m.mlock("c", _at(n), n)
    m.write("c", _at(n), n, 1)


def _split_middle(m: Machine, n: int) -> None:
    _family(m, n)
    m.mprotect("c", _at(n // 4), n // 2, "r")


def _split_upper(m: Machine, n: int) -> None:
    _family(m, n)
    m.mprotect("c", _at(n // 2), n // 2, "r")


def _split_lower(m: Machine, n: int) -> None:
    _family(m, n)
    m.mprotect("c", A, n // 2, "r")


SCENARIOS: dict[str, Scenario] = {
    # mprotect of the middle: two splits
    "split": (_family, lambda m, n: m.mprotect("c", _at(n // 4), n // 2, "r")),
    # munmap of the middle: the same splits; the hooks all come before the zap
    "munmap_split": (_family, lambda m, n: m.munmap("c", _at(n // 4), n // 2)),
    # mprotect back: prev absorbs mid and next
    "merge_both": (_split_middle, lambda m, n: m.mprotect("c", _at(n // 4), n // 2, "rw")),
    # [0, n/2) rw, [n/2, n) r; make [n/2, 3n/4) rw: prev grows, mid shrinks
    "merge_left_part": (_split_upper, lambda m, n: m.mprotect("c", _at(n // 2), n // 4, "rw")),
    # [0, n/2) r, [n/2, n) rw; make [n/4, n/2) rw: next grows down, mid shrinks
    "merge_right_part": (_split_lower, lambda m, n: m.mprotect("c", _at(n // 4), n // 4, "rw")),
    # the whole of mid joins prev / next
    "merge_left_whole": (_split_upper, lambda m, n: m.mprotect("c", _at(n // 2), n // 2, "rw")),
    "merge_right_whole": (_split_lower, lambda m, n: m.mprotect("c", A, n // 2, "rw")),
    # the anon_vma_chain patch's "importer": a VMA without an anon_vma takes pages of one with
    # (munlock of [n, 3n/2): prev, with no anon_vma, grows over written pages)
    "importer": (_importer_setup, lambda m, n: m.munlock("c", _at(n), n // 2)),
}


def run_scenario(scheme: str, scenario: str, *, pages: int = 16,
                 vm_lock_rmap: bool = False) -> list[Boundary]:
    """Set the scenario up, then run its surgery with walks at every boundary."""
    setup, surgery = SCENARIOS[scenario]
    m = Machine(Config(scheme=scheme, vm_lock_rmap=vm_lock_rmap))
    setup(m, pages)
    mm = m.task("c").mm
    assert mm is not None
    study = RaceStudy(m, mm, mm_truth(mm), scenario, LOCKED.get(scheme, frozenset()))
    m.surgery_hook = study
    try:
        surgery(m, pages)
    finally:
        m.surgery_hook = None
    m.check()  # the walks changed nothing: the model is consistent afterwards
    return study.seen


def run_race(scheme: str, *, pages: int = 16, vm_lock_rmap: bool = False,
             scenarios: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every scenario for one scheme: flat totals, and where misses were."""
    names = scenarios or tuple(SCENARIOS)
    total_open = total_any = reached = walks_open = 0
    where_open: list[str] = []
    where_any: list[str] = []
    per: dict[str, int] = {}
    for sc in names:
        seen = run_scenario(scheme, sc, pages=pages, vm_lock_rmap=vm_lock_rmap)
        per[f"open_{sc}"] = sum(b.missed for b in seen if b.open)
        for b in seen:
            reached += 1
            total_any += b.missed
            if b.open:
                walks_open += 1
                total_open += b.missed
            if b.missed:
                tag = f"{sc}@{b.name}"
                (where_open if b.open else where_any).append(tag)
    return {"boundaries": reached, "boundaries_open": walks_open, "misses_open": total_open,
            "misses_any": total_any, "missed_at_open": " ".join(dict.fromkeys(where_open)),
            "missed_at_locked": " ".join(dict.fromkeys(where_any)), **per}
