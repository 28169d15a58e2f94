# SPDX-License-Identifier: GPL-2.0-only
"""Batched page_referenced from each walk's answer instead of its steps.

Andrea Arcangeli's anon_vma with a thousand forked children lists a
thousand VMAs for each of a million pages: the kernel's walks examine about
5x10^8 VMAs before their mapcount countdowns stop them. The model charges
every one of them, but finds the PTEs that really map each page through an
index (the page tables of the VMAs or mms the walk would examine, scanned
once per group, or the pte_chain itself), and computes where each walk
stops from that: a walk examines candidates in a fixed order and stops
right after the one holding its page's last mapping (the countdown), so

  visited   = position of the mapcount-th mapping + 1 (or all listed);
  ptes      = candidates among the visited ones whose range covers the page;
  trylocks  = candidates among the visited ones the walk trylocks;
  young     = the young bits of every mapping found (all of them are
              examined before the walk stops).

A scheme describes each group of frames as a WalkPlan: the frames, how many
candidates each walk lists, the mappings (frame, position in its walk, VMA,
PTE index), and a costs function for the ptes and trylock counts of a
prefix of each walk. A plan may instead ask for the literal walk of its
frames (anonmm when a page may migrate off an extinct mm, which changes the
walk order of the pages after it). tests/test_walk_plans.py checks this
against the literal walk, frame by frame, for every scheme.

Cost: O(mappings log mappings) per group plus what the scheme's costs
function takes (a prefix sum over candidates per distinct page offset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..mm_types import PTE_PRESENT, PTE_SHIFT, PTE_YOUNG
from ..page_alloc import PG_REFERENCED

if TYPE_CHECKING:
    from ..mm_state import MMState
    from ..mm_types import VMA

_EMPTY = np.zeros(0, np.int64)
#: Largest prefix-sum table built at once (entries); bigger ones go in chunks.
PREFIX_LIMIT = 1 << 24


@dataclass(slots=True, eq=False, kw_only=True)
class WalkPlan:
    """The page_referenced walks of one group of frames, by their answer.

    hit_* arrays describe the PTEs that map the group's frames and that the
    walks will find: hit_j the frame (index into frames), hit_pos its
    candidate's position in that frame's walk, hit_vid the VMA (index into
    vmas), hit_i the PTE's index in that VMA's page table.
    costs(j, k) -> (ptes, trylocks): for walks j that examined their first
    k candidates, the PTEs looked at and page table trylocks taken.
    """

    frames: np.ndarray
    literal: bool = False
    listed: np.ndarray = field(default_factory=lambda: _EMPTY)
    locks: int = 0
    vmas: list = field(default_factory=list)
    hit_j: np.ndarray = field(default_factory=lambda: _EMPTY)
    hit_pos: np.ndarray = field(default_factory=lambda: _EMPTY)
    hit_vid: np.ndarray = field(default_factory=lambda: _EMPTY)
    hit_i: np.ndarray = field(default_factory=lambda: _EMPTY)
    costs: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None


def literal_plan(frames: np.ndarray) -> WalkPlan:
    return WalkPlan(frames=frames, literal=True)


def referenced_by_plan(m: MMState, plan: WalkPlan, sel: np.ndarray, refs: np.ndarray,
                       visited: np.ndarray | None, listed: np.ndarray | None) -> None:
    """page_referenced for each frame of a plan that is not literal, as
    page_referenced_batch promises; sel[j] is the position of
    plan.frames[j] in refs, visited and listed, which it fills in."""
    assert not plan.literal  # rmap.core steps literal plans itself
    ft = m.frames
    st = m.walks
    f = plan.frames
    n = len(f)
    fl = ft.flags[f]
    refs[sel] += (fl & PG_REFERENCED) != 0
    ft.flags[f] = fl & ~np.uint32(PG_REFERENCED)
    mc = ft.mapcount[f].astype(np.int64)
    walked = mc > 0
    nw = int(np.count_nonzero(walked))
    st.count += nw
    st.anon_vmas += plan.locks * nw
    hj, hpos, hvid, hi = plan.hit_j, plan.hit_pos, plan.hit_vid, plan.hit_i
    young = np.zeros(len(hj), bool)
    if len(hj):
        # keep only PTEs that map their frame (page_vma_mapped's test)
        ptes = np.empty(len(hj), np.int64)
        order = np.argsort(hvid, kind="stable")
        bounds = np.flatnonzero(np.diff(hvid[order])) + 1
        for part in np.split(order, bounds):
            ptes[part] = plan.vmas[int(hvid[part[0]])].pt[hi[part]]
        mask = ~((1 << PTE_SHIFT) - 1) | PTE_PRESENT
        ok = (ptes & mask) == ((f[hj] << PTE_SHIFT) | PTE_PRESENT)
        hj, hpos, hvid, hi, ptes = hj[ok], hpos[ok], hvid[ok], hi[ok], ptes[ok]
        young = (ptes & PTE_YOUNG) != 0
    # each walk stops right after its mapcount-th mapping
    o = np.lexsort((hpos, hj))
    hj_s, hpos_s = hj[o], hpos[o]
    cnt = np.bincount(hj_s, minlength=n)
    first = np.cumsum(cnt) - cnt
    rank = np.arange(len(hj_s)) - first[hj_s]
    stopper = rank == mc[hj_s] - 1
    examined = plan.listed.astype(np.int64).copy()
    examined[hj_s[stopper]] = hpos_s[stopper] + 1
    examined[~walked] = 0
    seen = hpos < examined[hj]
    clear = seen & young
    if clear.any():
        np.add.at(refs, sel[hj[clear]], 1)
        cv, ci = hvid[clear], hi[clear]
        order = np.argsort(cv, kind="stable")
        bounds = np.flatnonzero(np.diff(cv[order])) + 1
        for part in np.split(order, bounds):
            vma = plan.vmas[int(cv[part[0]])]
            vma.pt[ci[part]] &= ~np.int64(PTE_YOUNG)
    st.vmas += int(examined.sum())
    st.listed += int(plan.listed[walked].sum())
    jw = np.flatnonzero(walked)
    if len(jw) and plan.costs is not None:
        p, t = plan.costs(jw, examined[jw])
        st.ptes += int(p.sum())
        m.counters["trylock"] += int(t.sum())
    if visited is not None:
        visited[sel] = examined
    if listed is not None:
        listed[sel] = np.where(walked, plan.listed, 0)


def prefix_counts(rows: Callable[[np.ndarray], np.ndarray], keys: np.ndarray, k: np.ndarray,
                  start: np.ndarray | None = None) -> np.ndarray:
    """For each walk w, how many of its first k[w] candidates pass a test.

    rows(ukeys) gives a boolean matrix, one row per distinct key, one column
    per candidate in list order; walk w uses row keys[w] from column
    start[w] on, round the list as a ring (anonmm starts at the indicated
    mm), or from column 0. Cost: O(distinct keys x candidates), in chunks.
    """
    out = np.zeros(len(keys), np.int64)
    if not len(keys):
        return out
    ukeys, inv = np.unique(keys, return_inverse=True)
    probe = rows(ukeys[:1])
    ncol = probe.shape[1]
    chunk = max(1, PREFIX_LIMIT // max(1, ncol + 1))
    for c0 in range(0, len(ukeys), chunk):
        block = rows(ukeys[c0:c0 + chunk])
        table = np.zeros((block.shape[0], ncol + 1), np.int64)
        np.cumsum(block, axis=1, out=table[:, 1:])
        sel = np.flatnonzero((inv >= c0) & (inv < c0 + chunk))
        u = inv[sel] - c0
        kk = k[sel]
        if start is None:
            out[sel] = table[u, kk]
            continue
        s = start[sel]
        end = s + kk
        wrap = end > ncol
        val = table[u, np.minimum(end, ncol)] - table[u, s]
        val[wrap] += table[u[wrap], end[wrap] - ncol]
        out[sel] = val
    return out


def group_by(keys: list) -> dict[int, tuple[object, list[int]]]:
    """Positions of equal objects (by identity), in first-seen order."""
    groups: dict[int, tuple[object, list[int]]] = {}
    for j, key in enumerate(keys):
        g = groups.get(id(key))
        if g is None:
            groups[id(key)] = (key, [j])
        else:
            g[1].append(j)
    return groups


def vma_of(vmas: list[VMA], vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted, disjoint vmas: the index of the VMA holding each vpn, and
    whether one does (find_vma plus the range check). Cost: O(n log V)."""
    if not vmas:
        return np.zeros(len(vpns), np.int64), np.zeros(len(vpns), bool)
    starts = np.fromiter((v.start for v in vmas), np.int64, len(vmas))
    ends = np.fromiter((v.end for v in vmas), np.int64, len(vmas))
    k = np.searchsorted(starts, vpns, side="right") - 1
    ok = k >= 0
    kk = np.maximum(k, 0)
    ok &= vpns < ends[kk]
    return kk, ok


__all__ = ["WalkPlan", "group_by", "literal_plan", "prefix_counts", "referenced_by_plan",
           "vma_of"]
