# SPDX-License-Identifier: GPL-2.0-only
"""The variants buggy on purpose (docs/posted.md): each bug is caught by
``rmaplab replay --check`` on its small trace (tests/traces/posted/), and the
fixed scheme passes the same trace. Each test names the message or commit
that found the bug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rmaplab.cliutil import SchemeList
from rmaplab.consts import WINDOW_START
from rmaplab.errors import InvariantViolated, SysError
from rmaplab.machine import Config, Machine
from rmaplab.mm_types import PTE_SHIFT
from rmaplab.rmap import SCHEMES, VARIANTS
from rmaplab.rmap.core import page_referenced_batch
from rmaplab.rmap.schemes import SCHEME_CLASSES, VARIANT_CLASSES

A = WINDOW_START
P = 4096
TRACES = Path(__file__).resolve().parent / "traces" / "posted"


def replay(trace: str, scheme: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rmaplab", "replay", str(TRACES / trace), "--scheme", scheme,
         "--check", "--results", "-", "--snapshots", "/dev/null", *extra],
        check=False, capture_output=True, text=True, timeout=120)


def assert_caught(p: subprocess.CompletedProcess, scheme: str, line: int, what: str) -> None:
    assert p.returncode == 1, p.stderr
    err = p.stderr
    assert f"invariant violated after trace line {line} (--check, CONFIG_DEBUG_VM)" in err, err
    assert what in err and f"{scheme} is buggy on purpose (docs/posted.md)" in err, err
    assert "Traceback" not in err and "internal error" not in err


def assert_passes(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, p.stderr
    assert "invariant" not in p.stderr


# -- the registry ---------------------------------------------------------------

def test_variants_are_opt_in() -> None:
    assert not set(VARIANTS) & set(SCHEMES)
    assert set(VARIANT_CLASSES) == set(VARIANTS) and not set(VARIANTS) & set(SCHEME_CLASSES)
    assert SchemeList().convert("all", None, None) == SCHEMES
    assert SchemeList().convert("modern,modern_degree", None, None) == ("modern",
                                                                        "modern_degree")
    assert Machine(Config(scheme="anon_vma_chain_posted")).rmap.name == "anon_vma_chain_posted"


def test_object_accounting_catches_an_object_nothing_reaches() -> None:
    """The checker's slab accounting: an avc no live VMA's chain holds is a leak."""
    m = Machine(Config(scheme="modern"))
    m.spawn("p")
    m.mmap("p", A, 1, "rw")
    m.write("p", A, 1, 1)
    m.slab.live["anon_vma_chain"] += 1  # an object nothing reaches
    with pytest.raises(InvariantViolated, match="anon_vma_chains allocated but 1 on the chains"):
        m.check()


# -- anon_vma_chain as posted ---------------------------------------------------------

def walk_cost_of_neighbour_page(scheme: str) -> tuple[int, int]:
    """A parent with a faulted VMA forks 100 children, then faults an adjacent
    VMA that borrows the first one's anon_vma (find_mergeable_anon_vma): the
    VMAs visited and listed by page_referenced on the new page."""
    m = Machine(Config(scheme=scheme, check=True))
    m.spawn("p")
    m.mmap("p", A, 4, "rw")
    m.write("p", A, 4, 1)
    m.mprotect("p", A, 4, "r")  # so the next mmap does not extend it
    for i in range(100):
        m.fork("p", f"c{i}")
    m.mmap("p", A + 4 * P, 1, "rw")
    m.write("p", A + 4 * P, 1, 2)
    first, second = m.tasks["p"].mm.vmas
    assert second.anon_vma is first.anon_vma, "the new VMA shares its neighbour's anon_vma"
    frame = int(second.pt[0]) >> PTE_SHIFT
    before = m.walks.as_dict()
    page_referenced_batch(m, np.array([frame], np.int64))
    after = m.walks.as_dict()
    return after["vmas"] - before["vmas"], after["listed"] - before["listed"]


def test_head_insertion_walks_the_borrowing_vma_first() -> None:
    """The posted anon_vma_prepare links with list_add (the head),
    anon_vma_chain_link with list_add_tail: in Rik van Riel's posting, "[PATCH
    -mm] change anon_vma linking to fix multi-process server scalability
    issue" (28 January 2010, <20100128002000.2bf5e365@annuminas.surriel.com>);
    no review message in the thread remarks on it. Not an invariant
    violation: a cost. The page of the VMA that borrowed the anon_vma is
    found at the first VMA of the list as posted, at the 102nd (after the
    neighbour and its 100 children) with tail insertion."""
    assert walk_cost_of_neighbour_page("anon_vma_chain_posted") == (1, 102)
    assert walk_cost_of_neighbour_page("anon_vma_chain") == (102, 102)


def test_swapin_of_a_shared_page_is_caught() -> None:
    """Found by Rik van Riel's own follow-up, "[PATCH -mm] rmap: remove
    obsolete check from __page_check_anon_rmap" (28 January 2010,
    <20100128014312.47c5045d@annuminas.surriel.com>): AIM7 oopsed in
    do_swap_page when pkill "paged in a page that was created in the parent
    process", because the page's anon_vma was not the VMA's. The posted
    page_add_anon_rmap points a page's first mapping at vma->anon_vma; a page
    still shared with the parent then leaves the parent's PTE unfindable."""
    assert_caught(replay("swapin.jsonl", "anon_vma_chain_posted"), "anon_vma_chain_posted",
                  15, "rmap walk from frame 1 misses")
    assert_passes(replay("swapin.jsonl", "anon_vma_chain"))
    assert_passes(replay("swapin.jsonl", "modern"))


def test_fork_error_path_leak_is_caught() -> None:
    """Andrew Morton's review, "Re: [PATCH -mm] change anon_vma linking to fix
    multi-process server scalability issue" (29 January 2010,
    <20100129151423.8b71b88e.akpm@linux-foundation.org>): "The error paths
    here don't undo the results of anon_vma_clone()" (and `pol' leaked in
    dup_mmap). The trace's fork fails allocating the child's anon_vma."""
    p = replay("fork_leak.jsonl", "anon_vma_chain_posted", "--fail-alloc", "anon_vma:2")
    assert_caught(p, "anon_vma_chain_posted", 11,
                  "2 anon_vma_chains allocated but 1 on the chains of live VMAs (leak)")
    for scheme in ("anon_vma_chain", "modern"):
        p = replay("fork_leak.jsonl", scheme, "--fail-alloc", "anon_vma:2")
        assert_passes(p)
        assert '"op": "fork", "ok": false, "error": "ENOMEM"' in p.stdout


@pytest.mark.parametrize("scheme", ["anon_vma_chain_posted", "anon_vma_chain"])
def test_every_fork_allocation_failure(scheme: str) -> None:
    """Each allocation of a fork of a parent with two anon_vmas in its chain
    fails in turn (tests/test_fault_injection.py): as posted, a failure
    after anon_vma_clone leaks; as merged, none does."""
    def setup() -> Machine:
        m = Machine(Config(scheme=scheme))
        m.spawn("p")
        m.mmap("p", A, 4, "rw")
        m.write("p", A, 4, 1)
        m.fork("p", "c")
        return m
    m = setup()
    calls = m.slab.calls
    m.fork("c", "x")
    n = m.slab.calls - calls
    leaks = []
    for k in range(1, n + 1):
        m = setup()
        m.slab.fail_at = m.slab.calls + k
        with pytest.raises(SysError):
            m.fork("c", "x")
        m.slab.fail_at = None
        try:
            m.check()
        except InvariantViolated as e:
            leaks.append((k, str(e)))
    if scheme == "anon_vma_chain":
        assert not leaks
    else:  # the child's anon_vma, then its avc: the two allocations after the clone
        assert [k for k, _ in leaks] == [n - 1, n], leaks
        assert all("(leak)" in why for _, why in leaks), leaks


# -- modern with the single degree counter ----------------------------------------------

def test_degree_double_reuse_is_caught() -> None:
    """Jann Horn, commit 2555283eb40d ("mm/rmap: Fix anon_vma->degree ambiguity
    leading to double-reuse", 2022): with one counter for child anon_vmas and
    VMAs, anon_vma_clone "may reuse an anon_vma for one VMA while it is still
    tied to another VMA"; the fixed rule (num_children < 2, num_active_vmas
    == 0) gives e an anon_vma of its own."""
    assert_caught(replay("degree_double_reuse.jsonl", "modern_degree"), "modern_degree", 16,
                  "which a VMA of task c still holds (reused while in use)")
    assert_passes(replay("degree_double_reuse.jsonl", "modern"))
    assert_passes(replay("degree_double_reuse.jsonl", "anon_vma_chain"))


def test_degree_reuse_in_the_library() -> None:
    """The same fork tree by hand: e's VMA takes over c's own anon_vma."""
    for scheme, shared in (("modern_degree", True), ("modern", False)):
        m = Machine(Config(scheme=scheme))
        m.spawn("a")
        m.mmap("a", A, 2, "rw")
        m.write("a", A, 2, 1)
        m.fork("a", "b")
        m.fork("b", "c")
        m.exit("b")
        m.fork("c", "d")
        m.fork("d", "e")
        vc, ve = (m.tasks[t].mm.vmas[0] for t in ("c", "e"))
        assert (ve.anon_vma is vc.anon_vma) is shared, scheme


def test_fail_alloc_and_variant_names_are_checked() -> None:
    """A bad --fail-alloc is a usage error (status 2) naming the option; the
    variants run only when named, and `schemes` marks them."""
    p = replay("fork_leak.jsonl", "modern", "--fail-alloc", "avc:1")
    assert p.returncode == 2 and "--fail-alloc" in p.stderr and "anon_vma_chain" in p.stderr
    p = subprocess.run([sys.executable, "-m", "rmaplab", "schemes"], check=False,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    for name in VARIANTS:
        assert f"{name} (buggy on purpose)" in p.stdout
