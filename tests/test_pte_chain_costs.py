# SPDX-License-Identifier: GPL-2.0-only
"""pte_chain's charged rmap maintenance against a literal chain walk.

The reference below steps Rik van Riel's page_add_rmap and page_remove_rmap
(mm/rmap.c, Linux 2.5, 2002) node by node on its own singly linked lists:
a new entry goes in front of the chain (a direct pointer first becomes a
one-node chain), a remove compares the direct pointer (one) or walks from
the head to its PTE, frees that node and turns a chain of one back into a
direct pointer. It shadows every add and remove the model makes on random
traces and on a fork-heavy family; the model's counters (rmap_add_nodes,
rmap_remove_nodes, pte_chain_alloc, pte_chain_free) must equal the
reference's, call by call, and so must each chain's order.
"""

from __future__ import annotations

import numpy as np
import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.gentrace import generate_trace
from rmaplab.machine import Config, Machine
from rmaplab.replay import replay
from rmaplab.rmap.pte_chain import PteChainScheme
from rmaplab.trace import parse_trace_lines

P = 4096
KEYS = ("rmap_add_nodes", "rmap_remove_nodes", "pte_chain_alloc", "pte_chain_free")


class LiteralChains:
    """page->pte of every frame: a direct pointer, or a chain, head first."""

    def __init__(self) -> None:
        self.direct: dict[int, int] = {}
        self.chain: dict[int, list[int]] = {}
        self.count = dict.fromkeys(KEYS, 0)

    def add(self, f: int, ptep: int) -> None:
        """page_add_rmap, step by step."""
        self.count["rmap_add_nodes"] += 1  # PageDirect / the head pointer
        if f in self.direct:  # convert a direct pointer into a chain
            self.chain[f] = [self.direct.pop(f)]
            self.count["pte_chain_alloc"] += 1
        if f in self.chain:  # hook the new node up in front
            self.chain[f].insert(0, ptep)
            self.count["pte_chain_alloc"] += 1
        else:
            self.direct[f] = ptep

    def remove(self, f: int, ptep: int) -> None:
        """page_remove_rmap, step by step."""
        if f in self.direct:
            self.count["rmap_remove_nodes"] += 1
            assert self.direct[f] == ptep, "page_remove_rmap: not the direct pointer"
            del self.direct[f]
            return
        pc = self.chain[f]
        for k, entry in enumerate(pc):
            self.count["rmap_remove_nodes"] += 1
            if entry == ptep:
                del pc[k]
                self.count["pte_chain_free"] += 1
                if len(pc) == 1:  # convert to direct
                    self.direct[f] = pc[0]
                    del self.chain[f]
                    self.count["pte_chain_free"] += 1
                return
        raise AssertionError(f"page_remove_rmap: {ptep:#x} not on frame {f}'s chain")


def shadow(m: Machine) -> LiteralChains:
    """Make every add and remove of m's pte_chain scheme also step the
    reference, and compare the counters after each call."""
    rmap = m.rmap
    assert isinstance(rmap, PteChainScheme)
    ref = LiteralChains()
    add, remove, new = rmap._add, rmap._remove, rmap.page_add_new_anon

    def same() -> None:
        assert {k: m.counters[k] for k in KEYS} == ref.count

    def add_(frames: np.ndarray, keys: np.ndarray) -> None:
        for f, key in zip(frames.tolist(), keys.tolist()):
            ref.add(f, key)
        add(frames, keys)
        same()

    def remove_(frames: np.ndarray, keys: np.ndarray) -> None:
        for f, key in zip(frames.tolist(), keys.tolist()):
            ref.remove(f, key)
        remove(frames, keys)
        same()

    def new_(frames, vma, vpns) -> None:
        for f, key in zip(frames.tolist(), rmap.keys(vma, vpns).tolist()):
            ref.add(f, key)
        new(frames, vma, vpns)
        same()

    rmap._add = add_  # type: ignore[method-assign]
    rmap._remove = remove_  # type: ignore[method-assign]
    rmap.page_add_new_anon = new_  # type: ignore[method-assign]
    return ref


def same_chains(m: Machine, ref: LiteralChains) -> None:
    rmap = m.rmap
    assert isinstance(rmap, PteChainScheme)
    for f in m.frames.allocated().tolist():
        want = ref.chain.get(f) or ([ref.direct[f]] if f in ref.direct else [])
        assert rmap.chain(f) == want, f"frame {f}"


@pytest.mark.parametrize("seed", range(1, 13))
def test_random_traces_charge_the_literal_walk(seed: int) -> None:
    m = Machine(Config(scheme="pte_chain", check=True))
    ref = shadow(m)
    ops = parse_trace_lines(generate_trace(seed, 250, tasks=6))
    replay(ops, machine=m)
    same_chains(m, ref)
    assert m.counters["rmap_add_nodes"] > 0


def test_exit_of_the_oldest_sharer_walks_the_whole_chain() -> None:
    """The issue's example, smaller: the parent is at every chain's tail."""
    n, pages = 50, 10
    m = Machine(Config(scheme="pte_chain", check=True))
    ref = shadow(m)
    m.spawn("p")
    m.mmap("p", A, pages, "rw")
    m.write("p", A, pages, 1)
    for i in range(n):
        m.fork("p", f"c{i}")
    assert m.counters["rmap_add_nodes"] == pages * (n + 1)  # no search at fork
    assert m.counters["pte_chain_alloc"] == pages * (n + 1)
    before = m.counters["rmap_remove_nodes"]
    m.exit("p")
    assert m.counters["rmap_remove_nodes"] - before == pages * (n + 1)
    before = m.counters["rmap_remove_nodes"]
    m.exit(f"c{n - 1}")  # the newest: at the head
    assert m.counters["rmap_remove_nodes"] - before == pages
    m.exit("c0")  # now the oldest
    same_chains(m, ref)
    for i in range(1, n - 1):
        m.write(f"c{i}", A, pages, 2)  # COW, oldest first: each at the tail
    same_chains(m, ref)
    assert m.counters["pte_chain_alloc"] == m.counters["pte_chain_free"]


def test_mremap_and_swap_charge_the_literal_walk() -> None:
    m = Machine(Config(scheme="pte_chain", check=True))
    ref = shadow(m)
    m.spawn("p")
    m.mmap("p", A, 16, "rw")
    m.write("p", A, 16, 1)
    for i in range(4):
        m.fork("p", f"c{i}")
    m.mremap("c1", A, 8, 8, A + 100 * P)
    m.swapon(64)
    m.reclaim(12)
    m.read("c2", A, 16, [])
    m.exit("c0")
    same_chains(m, ref)
    assert m.counters["rmap_remove_nodes"] > 0
