# SPDX-License-Identifier: GPL-2.0-only
"""Seed 003's MADV_VOLATILE (RFC v3), rule by rule, under every scheme."""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.errors import SysError
from rmaplab.machine import Config, Machine
from rmaplab.mm_types import VM_LOCKED, VM_VOLATILE
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


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_young_volatile_mapping_means_reclaim_not_activation(scheme: str) -> None:
    """RFC v3, mm/vmscan.c page_check_references: `if (vm_flags & VM_VOLATILE)
    return PAGEREF_RECLAIM;`, where vm_flags is the OR of the flags of every
    VMA whose PTE page_referenced found young. A page young in a volatile and
    in an ordinary mapping is therefore reclaimed at once (swapped out, since
    not every mapper is volatile), where an ordinary shared page is activated
    first."""
    for volatile in (False, True):
        m = machine(scheme)
        m.swapon(64)
        m.fork("a", "b")
        assert m.read("a", A, 8, []) == [9] * 8 and m.read("b", A, 8, []) == [9] * 8  # young
        if volatile:
            m.madvise("a", A, 8, "volatile")  # b's mapping stays ordinary
        assert m.reclaim(8) == 8
        # ordinary: every page activated on the first pass, then scanned again
        assert m.counters["pgscan"] == (8 if volatile else 16)
        assert m.counters["pswpout"] == 8 and m.counters["pgvolatile"] == 0
        assert m.read("a", A, 8, []) == [9] * 8 and m.read("b", A, 8, []) == [9] * 8
        m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mlock_leaves_a_volatile_vma_unlocked_and_populate_faults_it(scheme: str) -> None:
    """RFC v3, include/linux/mm.h: VM_VOLATILE joins VM_SPECIAL ("Special vmas
    that are non-mergable, non-mlock()able"), and mlock_fixup leaves a
    VM_SPECIAL VMA as it is ("don't set VM_LOCKED, don't count"); mlock still
    succeeds and populates the range, and the population's first fault on an
    empty entry of the volatile VMA clears VM_VOLATILE (handle_pte_fault's
    branch). No VMA is ever both locked and volatile."""
    m = machine(scheme)
    m.madvise("a", A + 2 * P, 4, "volatile")
    m.mlock("a", A, 8)  # every page present: nothing faults in the volatile VMA
    vmas = m.tasks["a"].mm.vmas
    assert vol(m) == [False, True, False]
    assert [bool(v.flags & VM_LOCKED) for v in vmas] == [True, False, True]
    assert m.counters["mmap_sem_write"] == 1  # only madvise's
    m.munlock("a", A, 8)
    m.madvise("a", A + 2 * P, 4, "volatile")  # still volatile: nothing to split
    m.madvise("a", A + 3 * P, 1, "dontneed")  # a hole in the volatile VMA
    m.mlock("a", A, 8)
    vmas = m.tasks["a"].mm.vmas
    # the hole's fault dropped the flag; the locked neighbours cannot merge with it
    assert vol(m) == [False, False, False]
    assert [bool(v.flags & VM_LOCKED) for v in vmas] == [True, False, True]
    assert m.read("a", A, 8, []) == [9, 9, 9, 0, 9, 9, 9, 9]
    assert not any(v.flags & VM_LOCKED and v.flags & VM_VOLATILE for v in vmas)
    m.check()
