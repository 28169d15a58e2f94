# SPDX-License-Identifier: GPL-2.0-only
"""Walks: the batched page_referenced equals the literal one, frame by frame,
in what it returns, what it clears and what it charges."""

from __future__ import annotations

import numpy as np
import pytest

from rmaplab.gentrace import generate_trace
from rmaplab.mm_types import PTE_YOUNG
from rmaplab.replay import replay
from rmaplab.rmap import SCHEMES
from rmaplab.rmap.core import page_referenced, page_referenced_batch
from rmaplab.trace import parse_trace_lines


def young_bits(m) -> list:
    return [(t, v.start, (v.pt & PTE_YOUNG).tolist()) for t in sorted(m.tasks)
            for v in m.tasks[t].mm.vmas]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("seed", range(1, 9))
def test_batched_walk_is_the_literal_walk(scheme: str, seed: int) -> None:
    ops = parse_trace_lines(generate_trace(seed, 250, kernel_only=True, no_swap=True))
    m = replay(ops, scheme=scheme).machine
    frames = m.frames.allocated()
    assert len(frames), "the trace left no pages to walk"
    m2 = replay(ops, scheme=scheme).machine  # the same state again: replay is deterministic
    assert young_bits(m2) == young_bits(m)
    literal = np.array([page_referenced(m, int(f)) for f in frames])
    batched = page_referenced_batch(m2, frames)
    assert batched.tolist() == literal.tolist()
    assert m2.walks.as_dict() == m.walks.as_dict()
    assert young_bits(m2) == young_bits(m)


def forking_server(scheme: str):
    from rmaplab.consts import WINDOW_START as A
    from rmaplab.machine import Config, Machine

    m = Machine(Config(scheme=scheme, frames=100_000))
    m.spawn("p")
    m.mmap("p", A, 64, "rw")
    m.write("p", A, 64, 1)
    for i in range(20):
        m.fork("p", f"c{i}")
        m.write(f"c{i}", A + (i % 4) * 16 * 4096, 16, 2)  # a quarter each: some stay shared
    m.mprotect("c3", A + 4096, 2, "r")  # split a child's VMA
    m.mremap("c5", A, 8, 8, A + 512 * 4096)  # and move part of another
    return m


@pytest.mark.parametrize("scheme", SCHEMES)
def test_batched_walk_forking_server(scheme: str) -> None:
    m, m2 = forking_server(scheme), forking_server(scheme)
    frames = m.frames.allocated()
    literal, costs, lists = [], [], []
    for f in frames:
        before, lbefore = m.walks.vmas, m.walks.listed
        literal.append(page_referenced(m, int(f)))
        costs.append(m.walks.vmas - before)
        lists.append(m.walks.listed - lbefore)
    visited = np.zeros(len(frames), np.int64)
    listed = np.zeros(len(frames), np.int64)
    assert page_referenced_batch(m2, frames, visited, listed).tolist() == literal
    assert visited.tolist() == costs
    assert listed.tolist() == lists
    assert m2.walks.as_dict() == m.walks.as_dict()
    assert young_bits(m2) == young_bits(m)
    # seed 002's picture: pages shared by many children make long walks
    assert m.walks.listed > m.walks.count


def test_modern_walks_the_interval_tree_in_pgoff_order() -> None:
    """anon_vma_interval_tree: in-order by pgoff, equal keys in insertion
    order, and a VMA vma_adjust touched goes back in after its equals."""
    from rmaplab.consts import WINDOW_START
    from rmaplab.machine import Config, Machine

    a = WINDOW_START
    m = Machine(Config(scheme="modern", check=True))
    m.spawn("p")
    m.mmap("p", a, 8, "rw")
    m.write("p", a, 8, 1)
    m.fork("p", "c1")
    m.fork("p", "c2")
    # mprotect of the lower half splits at its end (__split_vma, new above):
    # the upper part is cloned onto the root's tree first, then the lower
    # part (its end changed) is taken out and put back
    m.mprotect("p", a, 4, "r")
    lower, upper = m.task("p").mm.vmas
    c1, c2 = (m.task(n).mm.vmas[0] for n in ("c1", "c2"))
    root = lower.anon_vma
    assert [avc.vma for avc in root.head] == [c1, c2, upper, lower]  # insertion order
    assert m.rmap.walk_order(root) == [c1, c2, lower, upper]  # the tree's order
    # a page of the lower half: the VMAs covering it, in tree order
    frame = int(m.frames.allocated()[0])
    assert m.frames.index[frame] == lower.pgoff
    assert [v for v, _ in m.rmap.candidates(frame, None)] == [c1, c2, lower]
    # the 2010 list has no tree: every VMA, in list order, which a split
    # does not change (the new VMA is added, the old one stays in place)
    m2 = Machine(Config(scheme="anon_vma_chain"))
    m2.spawn("p")
    m2.mmap("p", a, 8, "rw")
    m2.write("p", a, 8, 1)
    m2.mprotect("p", a, 4, "r")
    lo, up = m2.task("p").mm.vmas
    assert m2.rmap.walk_order(lo.anon_vma) == [lo, up]
