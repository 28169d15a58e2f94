# SPDX-License-Identifier: GPL-2.0-only
"""The batched page_referenced against the literal one, for every scheme, on
small machines built to exercise what each scheme's fast path must get
right: long family lists (anon_vma), walks that start mid-bundle and wrap
round it (anonmm), chains and direct pointers (pte_chain), pages of exited
mms (anonmm migrates them), split and moved VMAs, and pages in the swap
cache that nothing maps. Results, young bits, charges (walks, trylocks),
per-walk visited and listed counts, and anonmm's page->mapping must agree
frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.machine import Config, Machine
from rmaplab.mm_types import PTE_YOUNG
from rmaplab.rmap import SCHEMES
from rmaplab.rmap.core import page_referenced, page_referenced_batch

P = 4096


def aim7(scheme: str, n: int = 12, pages: int = 16) -> Machine:
    """Seed 002's workload, small: every child COWs every page."""
    m = Machine(Config(scheme=scheme, frames=10_000))
    m.spawn("p")
    m.mmap("p", A, pages, "rw")
    m.write("p", A, pages, 1)
    for i in range(n):
        m.fork("p", f"c{i}")
    for i in range(n):
        m.write(f"c{i}", A, pages, 2)
    return m


def family(scheme: str, exit_parent: bool = False, swap: bool = False) -> Machine:
    """Children that COW part of the range, a grandchild, a split, a move."""
    m = Machine(Config(scheme=scheme, frames=10_000))
    m.spawn("p")
    m.mmap("p", A, 32, "rw")
    m.write("p", A, 32, 1)
    m.mmap("p", A + 64 * P, 8, "rw")
    m.write("p", A + 64 * P, 8, 7)
    for i in range(6):
        m.fork("p", f"c{i}")
        m.write(f"c{i}", A + (i % 4) * 8 * P, 8, 2)
    m.write("c2", A + 24 * P, 4, 3)
    m.fork("c2", "g")  # g joins the tail: walks from c2 wrap round the bundle
    m.write("g", A + 30 * P, 1, 4)
    m.mprotect("c1", A + 3 * P, 2, "r")
    m.mremap("c5", A + 64 * P, 4, 4, A + 200 * P)  # moved: anonmm copies shared pages
    m.read("c3", A, 32, [])  # young bits on shared pages
    if swap:
        m.swapon(64)
        m.reclaim(12)
        m.read("c0", A, 8, [])
    if exit_parent:
        m.exit("p")
    return m


def mapping_names(m: Machine) -> list:
    """page->mapping of every frame, named so two machines can be compared."""
    out = []
    ft = m.frames
    for f in m.frames.allocated().tolist():
        a = ft.mapping[f]
        if a is None:
            out.append(None)
        elif hasattr(a, "serial"):
            out.append((type(a).__name__, a.serial))
        else:
            out.append(type(a).__name__)
    return out


def young_bits(m: Machine) -> list:
    return [(t, v.start, (v.pt & PTE_YOUNG).tolist()) for t in sorted(m.tasks)
            for v in m.tasks[t].mm.vmas]


def compare(build, scheme: str) -> tuple[Machine, np.ndarray]:
    m, m2 = build(scheme), build(scheme)
    assert young_bits(m) == young_bits(m2) and mapping_names(m) == mapping_names(m2)
    frames = m.frames.allocated()
    literal, visited, listed = [], [], []
    for f in frames.tolist():
        before, lbefore = m.walks.vmas, m.walks.listed
        literal.append(page_referenced(m, f))
        visited.append(m.walks.vmas - before)
        listed.append(m.walks.listed - lbefore)
    v2 = np.zeros(len(frames), np.int64)
    l2 = np.zeros(len(frames), np.int64)
    fast = page_referenced_batch(m2, frames, v2, l2)
    assert fast.tolist() == literal, "referenced counts differ"
    assert v2.tolist() == visited, "VMAs (entries, mms) visited per walk differ"
    assert l2.tolist() == listed, "listed per walk differs"
    assert m2.walks.as_dict() == m.walks.as_dict()
    assert m2.counters["trylock"] == m.counters["trylock"]
    assert young_bits(m2) == young_bits(m)
    assert mapping_names(m2) == mapping_names(m), "page->mapping differs after the walks"
    assert m2.objects() == m.objects()
    m.check()
    m2.check()
    for t in list(m2.tasks):
        m2.exit(t)
    m2.check()
    assert not any(m2.objects().values()), m2.objects()
    return m, v2


@pytest.mark.parametrize("scheme", SCHEMES)
def test_aim7_small(scheme: str) -> None:
    m, visited = compare(aim7, scheme)
    frames = m.frames.allocated()
    assert len(frames) == 13 * 16
    if scheme == "anon_vma":
        # one list of 13 VMAs: child i's pages stop at position i + 2
        assert sorted(set(visited.tolist())) == list(range(1, 14))
        assert m.walks.listed == 13 * len(frames)
    else:
        assert set(visited.tolist()) == {1}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("exit_parent", [False, True], ids=["all-alive", "parent-exited"])
def test_family(scheme: str, exit_parent: bool) -> None:
    compare(lambda s: family(s, exit_parent=exit_parent), scheme)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_family_with_swap(scheme: str) -> None:
    compare(lambda s: family(s, exit_parent=True, swap=True), scheme)


def test_anonmm_migrates_pages_of_an_exited_mm() -> None:
    """page_referenced moves a page off an extinct mm's anonmm, which then goes."""
    m = Machine(Config(scheme="anonmm", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 4, "rw")
    m.write("p", A, 4, 1)
    m.fork("p", "c")
    m.exit("p")
    assert m.objects()["anonmm"] == 2  # the head stays: the pages point at it
    m.fork("c", "d")
    m.write("c", A, 1, 2)  # COW: a page of c's own
    frames = m.frames.allocated()
    page_referenced_batch(m, frames)
    m.check()
    ams = {m.frames.mapping[f] for f in frames.tolist()}
    assert all(a.mm is not None for a in ams), "a page still points at the exited mm"
    assert m.objects()["anonmm"] == 3  # the head keeps its own reference; c and d
