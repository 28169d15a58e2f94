# SPDX-License-Identifier: GPL-2.0-only
"""Seed 003's MADV_VOLATILE (RFC v3), rule by rule, under every scheme."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.errors import Segv, SysError
from rmaplab.machine import Config, Machine
from rmaplab.mm_types import VM_LOCKED, VM_VOLATILE
from rmaplab.rmap import SCHEMES
from rmaplab.volatile import anon_vma_walk

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


def forked(scheme: str) -> Machine:
    """a's eight pages, shared with its child b (both PTEs map each frame)."""
    m = machine(scheme)
    m.swapon(64)
    m.fork("a", "b")
    return m


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_vma_that_does_not_map_the_page_still_counts_when_the_walk_meets_it(
        scheme: str) -> None:
    """RFC v3, mm/rmap.c try_to_unmap_anon: `if (!(vma->vm_flags & VM_VOLATILE))
    is_volatile = false;` comes before try_to_unmap_one looks for the PTE, so
    a VMA on the anon_vma's list that covers the page but maps something
    else keeps the page from being discarded. Here a wrote after the fork:
    a's VMA, first on the list, now maps its own copies, and b, volatile,
    is the only mapper of the old pages; they are swapped out, not
    discarded."""
    m = forked(scheme)
    m.write("a", A, 8, 5)  # COW: a has new pages; the old ones are b's alone
    m.madvise("b", A, 8, "volatile")
    m.madvise("b", A, 8, "pageout")
    assert m.counters["pgvolatile"] == 0 and m.counters["pswpout"] == 8
    assert m.read("b", A, 8, []) == [9] * 8
    assert m.read("a", A, 8, []) == [5] * 8
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_walk_stops_at_the_last_mapping(scheme: str) -> None:
    """RFC v3, try_to_unmap_anon: the loop ends `if (ret != SWAP_AGAIN ||
    !page_mapped(page))`, so VMAs after the last mapping are never asked.
    Here b wrote after the fork: a, volatile and first on the list of its
    pages' anon_vma, is their only mapper, and b's ordinary VMA after it does
    not keep them: they are discarded, b's own copies are swapped out."""
    m = forked(scheme)
    m.write("b", A, 8, 5)  # b's copies; a's pages are a's alone
    m.madvise("a", A, 8, "volatile")
    assert m.reclaim(16) == 16
    assert m.counters["pgvolatile"] == 8 and m.counters["pswpout"] == 8
    assert m.read("a", A, 8, []) == [0] * 8
    assert m.read("b", A, 8, []) == [5] * 8
    m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_try_to_zap_one_empties_every_pte_holding_the_swap_entry(scheme: str) -> None:
    """RFC v3, try_to_unmap_anon: once is_volatile holds, a second loop calls
    try_to_zap_one on every VMA of the anon_vma's list, and
    page_check_volatile_address picks any PTE holding the page's swap entry,
    in a VMA the first loop never met (it stopped at the last mapping), and
    one that is not volatile, too. Here a swapped its page back in while b
    kept the swap entry: a's discard takes b's data with it."""
    m = forked(scheme)
    assert m.reclaim(8) == 8  # both PTEs of each page become swap entries
    assert m.read("a", A, 8, []) == [9] * 8  # a's back in the swap cache; b's still swap
    m.madvise("a", A, 8, "volatile")
    assert m.reclaim(8) == 8
    assert m.counters["pgvolatile"] == 8
    m.check()
    assert m.tasks["b"].mm.swapents == 0  # b's swap entries zapped with a's
    assert m.read("a", A, 8, []) == [0] * 8
    assert m.read("b", A, 8, []) == [0] * 8  # the RFC's code loses b's data
    m.check()


def random_volatile_run(scheme: str, seed: int, on_step=None,
                        mremap: bool = True) -> tuple[list, dict[str, int]]:
    """Forks, writes (COW), reads (swap-in), volatile and dontneed advice,
    mlock, mremap, exits and reclaim among four tasks over twelve pages:
    what was read, and the reclaim counters."""
    rng = random.Random(seed)
    m = Machine(Config(scheme=scheme, frames=200))
    m.spawn("t0")
    m.mmap("t0", A, 12, "rw")
    m.swapon(48)
    seen: list = []
    n = 0
    for _ in range(120):
        tasks = sorted(m.tasks)
        t = rng.choice(tasks)
        lo = rng.randrange(12)
        pages = rng.randint(1, 12 - lo)
        kind = rng.choice(["write", "write", "read", "read", "fork", "volatile", "volatile",
                           "reclaim", "reclaim", "dontneed", "mlock", "mremap", "exit"])
        try:
            if kind == "write":
                m.write(t, A + lo * P, pages, rng.randrange(1, 255))
            elif kind == "read":
                seen.append((t, lo, m.read(t, A + lo * P, pages, [])))
            elif kind == "fork" and len(tasks) < 4:
                n += 1
                m.fork(t, f"c{n}")
            elif kind == "volatile":
                m.madvise(t, A + lo * P, pages, "volatile")
            elif kind == "reclaim":
                seen.append(("reclaim", m.reclaim(rng.randint(1, 16))))
            elif kind == "dontneed":
                m.madvise(t, A + lo * P, pages, "dontneed")
            elif kind == "mlock":
                m.mlock(t, A + lo * P, pages)
                m.munlock(t, A + lo * P, rng.randint(0, pages) or 1)
            elif kind == "mremap" and mremap and pages < 12:
                m.mremap(t, A + lo * P, pages, pages, A + (12 + rng.randrange(4)) * P)
            elif kind == "exit" and len(tasks) > 1:
                m.exit(t)
        except (SysError, Segv):
            seen.append((kind, "error"))
        m.check()
        if on_step is not None:
            on_step(m)
    for t in sorted(m.tasks):
        seen.append((t, m.read(t, A, 12, []) if m.tasks[t].mm.vma_lookup(A) else None))
    return seen, {k: m.counters[k] for k in ("pgvolatile", "pswpout", "pgsteal")}


@pytest.mark.parametrize("seed", range(8))
def test_every_scheme_discards_the_same_pages(seed: int) -> None:
    """The RFC's walk is worked out from the scheme-independent lineages, so
    the walk order of a scheme (pte_chain meets only mappings, anonmm every
    mm of the family, the object-based schemes their anon_vmas' lists)
    never changes which pages are discarded."""
    base = random_volatile_run(SCHEMES[0], seed)
    assert base[1]["pgvolatile"] > 0 or seed % 4, "the runs should discard sometimes"
    for scheme in SCHEMES[1:]:
        if scheme != "anonmm":
            assert random_volatile_run(scheme, seed) == base, scheme
    # anonmm's private copies at mremap differ (docs/divergences.md 7): without mremap
    assert (random_volatile_run("anonmm", seed, mremap=False)
            == random_volatile_run(SCHEMES[0], seed, mremap=False))


@pytest.mark.parametrize("seed", range(4))
def test_the_rfc_walk_is_the_anon_vma_chain_list(seed: int) -> None:
    """volatile.anon_vma_walk (the VMAs RFC v3's try_to_unmap_anon visits, in
    Linux 3.6's list order) is, for every mapped page after every step, the
    list the anon_vma_chain scheme keeps, cut to the VMAs covering the page."""
    checked = [0]

    def compare(m: Machine) -> None:
        ft = m.frames
        for f in np.flatnonzero(ft.mapcount[:ft.next_unused] > 0).tolist():
            if f == 0:
                continue
            listed = [v for v, vpn in m.rmap.candidates(f, None) if 0 <= vpn - v.start < v.npages]
            assert [id(v) for v in anon_vma_walk(m, f)] == [id(v) for v in listed], f
            checked[0] += 1

    random_volatile_run("anon_vma_chain", seed, compare)
    assert checked[0] > 100


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_vma_that_does_not_cover_the_page_is_not_asked(scheme: str) -> None:
    """RFC v3, try_to_unmap_anon: `address = vma_address(page, vma); if
    (address == -EFAULT) continue;` comes before the VM_VOLATILE test, so
    only VMAs whose range covers the page's index count. Here both halves of
    a's and b's VMAs stay on the list of the pages' anon_vma after the
    splits; the ordinary lower halves do not cover the upper pages, which
    are discarded."""
    m = forked(scheme)
    m.mprotect("b", A, 4, "r")  # b: [0, 4) read-only, [4, 8) as before
    m.madvise("a", A + 4 * P, 4, "volatile")
    m.madvise("b", A + 4 * P, 4, "volatile")
    assert len(m.tasks["a"].mm.vmas) == 2 and len(m.tasks["b"].mm.vmas) == 2
    assert m.reclaim(8) == 8
    assert m.counters["pgvolatile"] == 4 and m.counters["pswpout"] == 4
    assert m.read("a", A, 8, []) == [9] * 4 + [0] * 4
    assert m.read("b", A, 8, []) == [9] * 4 + [0] * 4
    m.check()
