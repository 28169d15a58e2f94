# SPDX-License-Identifier: GPL-2.0-only
"""Scheme anon_vma (Andrea Arcangeli, 2004): one anon_vma per fork family,
walks that examine every VMA on its list, freeing when the list empties,
and the checker's rule for a scheme whose anon_vma does not mirror lineage."""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.errors import ModelBug
from rmaplab.machine import Config, Machine
from rmaplab.rmap.core import page_referenced

P = 4096


def frame_at(m: Machine, task: str, addr: int) -> int:
    vma = m.tasks[task].mm.vma_lookup(addr >> 12)
    return int(vma.pt[(addr >> 12) - vma.start]) >> 8


def family(n: int = 3) -> Machine:
    m = Machine(Config(scheme="anon_vma", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 8, "rw")
    m.write("p", A, 8, 1)
    for i in range(n):
        m.fork("p", f"c{i}")
    return m


def test_fork_links_children_into_the_parents_anon_vma() -> None:
    m = family()
    av = m.tasks["p"].mm.vmas[0].anon_vma
    assert m.objects()["anon_vma"] == 1
    assert [v.mm.owner.name for v in av.head] == ["p", "c0", "c1", "c2"]
    m.write("c2", A, 1, 2)  # a COWed page still belongs to the family's anon_vma
    assert m.frames.mapping[frame_at(m, "c2", A)] is av
    m.check()


def test_walk_examines_every_vma_on_the_list() -> None:
    m = family()
    m.write("c2", A, 1, 2)
    f = frame_at(m, "c2", A)
    page_referenced(m, f)  # mapped by c2 only, the last VMA on the list
    assert m.walks.as_dict() == {"count": 1, "anon_vmas": 1, "vmas": 4, "ptes": 4, "listed": 4}


def test_vmas_out_of_range_are_examined_without_a_pte() -> None:
    m = family(1)
    m.mprotect("c0", A, 4, "r")  # c0's VMA splits: both pieces on the list
    # the split keeps c0's VMA as the lower piece and lists the new upper one last
    f = frame_at(m, "p", A + 6 * P)  # shared by p and c0's upper piece
    page_referenced(m, f)
    st = m.walks.as_dict()
    assert st["listed"] == 3 and st["vmas"] == 3  # p, c0 lower, c0 upper
    assert st["ptes"] == 2  # the lower piece does not cover the page: passed over
    m.check()


def test_anon_vma_freed_when_its_list_empties() -> None:
    m = family()
    m.exit("p")
    assert m.objects()["anon_vma"] == 1  # the children keep it
    for i in range(3):
        m.exit(f"c{i}")
    m.check()
    assert not any(m.objects().values())


def test_split_and_mremap_keep_the_list() -> None:
    m = family(1)
    m.mprotect("p", A + 2 * P, 2, "r")
    m.mremap("c0", A + 4 * P, 2, 2, A + 100 * P)
    av = m.tasks["p"].mm.vmas[0].anon_vma
    assert m.objects()["anon_vma"] == 1
    assert all(v.anon_vma is av for t in ("p", "c0") for v in m.tasks[t].mm.vmas)
    assert len(av.head) == len(m.tasks["p"].mm.vmas) + len(m.tasks["c0"].mm.vmas)
    m.check()


def test_checker_catches_a_vma_missing_from_the_list() -> None:
    m = family(1)
    vma = m.tasks["c0"].mm.vmas[0]
    del vma.anon_vma.head[vma]  # the shared pages of c0 can no longer be found
    with pytest.raises(ModelBug, match="misses"):
        m.check()


def test_checker_still_asks_lineage_to_decide_the_anon_vma() -> None:
    m = family(1)
    m.mprotect("p", A + 2 * P, 2, "r")  # two pieces of one lineage
    vmas = m.tasks["p"].mm.vmas
    m.rmap.vma_unlink(vmas[1])
    m.rmap.vma_prepare(vmas[1], None)  # a new anon_vma for the same lineage
    with pytest.raises(ModelBug, match="lineage"):
        m.check()
