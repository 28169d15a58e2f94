# SPDX-License-Identifier: GPL-2.0-only
"""The anon_vma rule on the copy_vma path (mremap moving a VMA), every scheme.

Linux 6.18 asks the singular-chain question of the VMA being copied as well
as of the neighbour (Lorenzo Stoakes, "mm/vma: enforce VMA fork limit on
unfaulted,faulted mremap merge too", 5 Jan 2026,
<6e2b9b3024ae1220961c8b81d74296d4720eaf2b.1767638272.git.lorenzo.stoakes@oracle.com>):
a fork child's faulted VMA may not hand its anon_vma to an unfaulted
neighbour. The kernel's own answers are in tests/traces/merge_mremap_*.
"""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES


def at(page: int) -> int:
    return WINDOW_START + page * 4096


def vmas(m: Machine, task: str) -> list[tuple[int, int]]:
    snap = m.snapshot("now")["tasks"][task]["vmas"]
    return [((int(v["start"], 16) - WINDOW_START) // 4096,
             (int(v["end"], 16) - WINDOW_START) // 4096) for v in snap]


def written_a(scheme: str, fork: bool) -> tuple[Machine, str]:
    """A = pages [4, 7) written; with fork, a child inherits it (and copies its page)."""
    m = Machine(Config(scheme=scheme, check=True))
    m.spawn("p")
    m.mmap("p", at(4), 3, "rw")
    m.write("p", at(4), 1, 1)
    task = "p"
    if fork:
        m.fork("p", "c")
        m.write("c", at(4), 1, 2)  # its own copy: the chain stays non-singular
        task = "c"
    m.mremap(task, at(4), 3, 3, at(20))
    return m, task


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fork_childs_faulted_vma_moved_beside_an_unfaulted_one_stays_apart(scheme):
    m, task = written_a(scheme, fork=True)
    m.mmap(task, at(1), 3, "rw")
    m.mremap(task, at(20), 3, 3, at(4))
    assert vmas(m, task) == [(1, 4), (4, 7)]
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_move_without_a_fork_merges(scheme):
    m, task = written_a(scheme, fork=False)
    m.mmap(task, at(1), 3, "rw")
    m.mremap(task, at(20), 3, 3, at(4))
    assert vmas(m, task) == [(1, 7)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_parent_still_merges_after_the_fork(scheme):
    # The parent's chain stays singular: only the child is held back.
    m, _ = written_a(scheme, fork=True)
    m.mremap("p", at(4), 3, 3, at(20))
    m.mmap("p", at(1), 3, "rw")
    m.mremap("p", at(20), 3, 3, at(4))
    assert vmas(m, "p") == [(1, 7)]
    assert vmas(m, "c") == [(20, 23)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fork_child_merges_where_the_anon_vma_is_already_shared(scheme):
    # A split off its own VMA [4, 10) moves back beside the rest: same anon_vma.
    m = Machine(Config(scheme=scheme, check=True))
    m.spawn("p")
    m.mmap("p", at(4), 6, "rw")
    m.write("p", at(4), 1, 1)
    m.fork("p", "c")
    m.mremap("c", at(4), 3, 3, at(20))
    m.mmap("c", at(1), 3, "rw")
    m.mremap("c", at(20), 3, 3, at(4))
    assert vmas(m, "c") == [(1, 4), (4, 10)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unfaulted_vma_moved_beside_a_fork_childs_own_faulted_vma_merges(scheme):
    # The rule is about the anon_vma that would pass: an unfaulted source
    # takes the neighbour's, whose chain is the child's own (singular).
    m = Machine(Config(scheme=scheme, check=True))
    m.spawn("p")
    m.mmap("p", at(20), 3, "rw")
    m.fork("p", "c")
    m.mmap("c", at(1), 3, "rw")
    m.write("c", at(1), 1, 1)
    m.mremap("c", at(20), 3, 3, at(4))
    assert vmas(m, "c") == [(1, 7)]
