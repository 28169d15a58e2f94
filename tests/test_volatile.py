# SPDX-License-Identifier: GPL-2.0-only
"""Seed 003's MADV_VOLATILE (RFC v3), rule by rule, under every scheme."""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.errors import SysError
from rmaplab.machine import Config, Machine
from rmaplab.mm_types import VM_VOLATILE
from rmaplab.rmap import SCHEMES

P = 4096


def machine(scheme: str, **kw) -> Machine:
    m = Machine(Config(scheme=scheme, frames=1000, **kw))
    m.spawn("a")
    m.mmap("a", A, 8, "rw")
    m.write("a", A, 8, 9)
    return m


def vol(m: Machine, task: str = "a") -> list[bool]:
    return [bool(v.flags & VM_VOLATILE) for v in m.tasks[task].mm.vmas]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_kept_without_pressure(scheme: str) -> None:
    m = machine(scheme)
    m.madvise("a", A + 2 * P, 4, "volatile")
    assert vol(m) == [False, True, False]  # split, and volatile VMAs do not merge
    assert m.counters["vma_split"] == 2
    assert m.read("a", A, 8, []) == [9] * 8  # no fault, no zeroing: data kept
    assert vol(m) == [False, True, False]
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_discarded_reads_zero_and_the_first_fault_merges_back(scheme: str) -> None:
    m = machine(scheme)
    m.swapon(64)
    m.madvise("a", A + 2 * P, 4, "volatile")
    m.madvise("a", A, 8, "pageout")
    assert m.counters["pgvolatile"] == 4 and m.counters["pswpout"] == 4  # only the others
    m.check()
    before = m.counters["mmap_sem_write"]
    assert m.read("a", A + 2 * P, 4, []) == [0] * 4  # discarded pages read as zero
    assert m.counters["mmap_sem_write"] == before + 1
    assert vol(m) == [False]  # flag cleared, merged with both neighbours
    assert m.read("a", A, 2, []) == [9, 9]  # swapped, not discarded
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_page_shared_with_a_non_volatile_mapping_is_kept(scheme: str) -> None:
    m = machine(scheme)
    m.swapon(64)
    m.fork("a", "b")
    m.madvise("a", A, 8, "volatile")  # b's VMA is not volatile
    assert m.reclaim(16) > 0
    assert m.counters["pgvolatile"] == 0
    assert m.read("a", A, 8, []) == [9] * 8
    assert m.read("b", A, 8, []) == [9] * 8
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_einval_on_mlocked_range(scheme: str) -> None:
    m = machine(scheme)
    m.mlock("a", A + 4 * P, 2)
    with pytest.raises(SysError) as e:
        m.madvise("a", A, 8, "volatile")
    assert e.value.errno == "EINVAL"
    assert vol(m)[0]  # the VMA before the locked one was marked, as madvise does
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_without_swap_nothing_is_discarded_unless_the_option(scheme: str) -> None:
    m = machine(scheme)
    m.madvise("a", A, 8, "volatile")
    assert m.reclaim(8) == 0  # as posted: unmapping needs a swap entry
    assert m.read("a", A, 8, []) == [9] * 8
    m = machine(scheme, volatile_noswap=True)
    m.madvise("a", A, 8, "volatile")
    assert m.reclaim(8) == 8  # the RFC's aim: no swap needed
    assert m.counters["pgvolatile"] == 8
    assert m.read("a", A, 8, []) == [0] * 8
    m.check()
