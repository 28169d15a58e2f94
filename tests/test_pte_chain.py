# SPDX-License-Identifier: GPL-2.0-only
"""Scheme pte_chain (seed 001): direct pointers and chains, what fork costs,
try_to_unmap's trylocks, mremap's pointer rewrite, and the checker."""

from __future__ import annotations

import numpy as np
import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.errors import ModelBug
from rmaplab.machine import Config, Machine
from rmaplab.rmap.core import page_referenced
from rmaplab.rmap.pte_chain import MM_SHIFT, VPN_MASK

P = 4096


def frame_at(m: Machine, task: str, addr: int) -> int:
    vma = m.tasks[task].mm.vma_lookup(addr >> 12)
    return int(vma.pt[(addr >> 12) - vma.start]) >> 8


def where(m: Machine, key: int) -> tuple[str, int]:
    mm = m.rmap.mms[key >> MM_SHIFT]
    return mm.owner.name, (key & VPN_MASK) << 12


def test_direct_pointer_then_chain_then_direct_again() -> None:
    m = Machine(Config(scheme="pte_chain", frames=100))
    m.spawn("p")
    m.mmap("p", A, 4, "rw")
    m.write("p", A, 4, 1)
    assert m.objects()["pte_chain"] == 0  # mapped once: PageDirect, no node
    assert m.counters["rmap_ops"] == 4
    m.fork("p", "c")
    assert m.objects()["pte_chain"] == 8  # two nodes per page, one PTE each
    assert m.counters["rmap_ops"] == 8  # copy_page_range: one page_add_rmap per PTE
    f = frame_at(m, "p", A)
    # newest first: the child's PTE was added last
    assert [where(m, k) for k in m.rmap.chain(f)] == [("c", A), ("p", A)]
    m.write("c", A, 1, 2)  # COW: the old page goes back to a direct pointer
    assert m.objects()["pte_chain"] == 6
    assert [where(m, k) for k in m.rmap.chain(f)] == [("p", A)]
    m.check()
    m.exit("c")
    m.exit("p")
    m.check()
    assert not any(m.objects().values())


def test_fork_costs_one_rmap_op_per_pte() -> None:
    """Why fork was slow (seed 001): N children of P pages cost N x P chain
    operations, and leave P x (N + 1) nodes."""
    m = Machine(Config(scheme="pte_chain", frames=10_000))
    m.spawn("p")
    m.mmap("p", A, 50, "rw")
    m.write("p", A, 50, 1)
    before = m.counters["rmap_ops"]
    for i in range(10):
        m.fork("p", f"c{i}")
    assert m.counters["rmap_ops"] - before == 10 * 50
    assert m.objects()["pte_chain"] == 50 * 11
    sizes = m.rmap.rmap_bytes()
    assert sizes["x86_64"] == 16 * 550 + 8 * 50
    assert sizes["i386"] == 8 * 550 + 4 * 50
    m.check()


def test_walk_examines_exactly_the_chain() -> None:
    m = Machine(Config(scheme="pte_chain", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.write("p", A, 2, 1)
    for i in range(4):
        m.fork("p", f"c{i}")
    f = frame_at(m, "p", A)
    page_referenced(m, f)
    assert m.walks.as_dict() == {"count": 1, "anon_vmas": 0, "vmas": 5, "ptes": 5, "listed": 5}
    assert m.counters["trylock"] == 0  # seed 001's page_referenced locks nothing


def test_try_to_unmap_trylocks_each_entry() -> None:
    m = Machine(Config(scheme="pte_chain", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 3, "rw")
    m.write("p", A, 3, 1)
    m.fork("p", "c")
    m.swapon(16)
    m.madvise("p", A, 3, "cold")
    m.reclaim(3)
    m.check()
    swapped = sum(1 for t in ("p", "c") for pg in m.raw_task(m.tasks[t]).pages
                  if pg.state == "swap")
    assert swapped > 0
    assert m.counters["trylock"] == swapped  # one trylock per entry unmapped
    assert m.counters["trylock_fail"] == 0


def test_mremap_rewrites_the_pte_pointer() -> None:
    m = Machine(Config(scheme="pte_chain", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 4, "rw")
    m.write("p", A, 4, 1)
    m.fork("p", "c")
    ops = m.counters["rmap_ops"]
    m.mremap("c", A, 4, 4, A + 100 * P)
    assert m.counters["rmap_ops"] - ops == 2 * 4  # remove and add per moved PTE
    f = frame_at(m, "p", A + P)
    assert sorted(where(m, k) for k in m.rmap.chain(f)) == [("c", A + 101 * P), ("p", A + P)]
    m.check()


def test_checker_catches_a_lost_chain_entry() -> None:
    m = Machine(Config(scheme="pte_chain", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.write("p", A, 2, 1)
    m.fork("p", "c")
    m.fork("p", "d")
    f = frame_at(m, "p", A)
    chain = m.rmap.chains[f]
    key = next(iter(chain))
    del chain[key]  # the PTE stays, its rmap entry is gone
    m.rmap.nodes -= 1
    m.slab.live["pte_chain"] -= 1
    with pytest.raises(ModelBug, match="misses"):
        m.check()


def test_checker_catches_a_stale_direct_pointer() -> None:
    m = Machine(Config(scheme="pte_chain", frames=1000))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.write("p", A, 2, 1)
    f = frame_at(m, "p", A)
    m.rmap.direct[f] += 1  # points one page off
    with pytest.raises(ModelBug, match="misses"):
        m.check()
    assert np.int64(1) << MM_SHIFT > VPN_MASK


def test_failing_lazyfree_unmap_depends_on_walk_order() -> None:
    """docs/divergences.md entry 8: the chain is walked newest first, so the
    child's dirty PTE stops try_to_unmap before the parent's clean one goes."""
    def build(scheme: str) -> Machine:
        m = Machine(Config(scheme=scheme, frames=100))
        m.spawn("a")
        m.mmap("a", A, 2, "rw")
        m.write("a", A, 2, 1)  # dirty PTEs, copied dirty into the child
        m.fork("a", "b")
        m.madvise("a", A, 2, "free")  # cleans a's PTEs only
        m.reclaim(4)
        m.check()
        return m

    modern, chain = build("modern"), build("pte_chain")
    if modern.raw_task(modern.tasks["a"]).pages:
        pytest.skip("madvise free leaves shared pages alone here: no unmap fails part-way")
    assert [pg.state for pg in chain.raw_task(chain.tasks["a"]).pages] == ["present"] * 2
    for m in (modern, chain):
        assert [pg.state for pg in m.raw_task(m.tasks["b"]).pages] == ["present"] * 2
