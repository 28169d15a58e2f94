# SPDX-License-Identifier: GPL-2.0-only
"""What a scheme's rmap walk order decides after `reclaim` (docs/divergences.md 8).

Every scheme shares one try_to_unmap, which behaves as 6.18's does; only the
order in which each scheme meets a page's mappings differs. Two results
follow from that order, both reached only through the model-only `reclaim`
op. The traces below are minimised from random `gen-trace --ops 500` traces
with swap on.

- A lazily freed (MADV_FREE) page that another mapping dirtied: the walk
  drops the clean PTEs it meets before the dirty one, then gives up. The
  dropped PTEs stay dropped (6.18's try_to_unmap_one puts back only the
  dirty one), so which process reads 0 afterwards depends on the order.
- A shared page that reclaim swaps out: the first mm the walk meets joins
  mmlist first, at the front. swapoff brings pages back one mm at a time in
  mmlist order, which sets their LRU order, and so what a later `reclaim`
  takes.

modern walks as 6.18's interval tree does (by the VMA's pgoff; among equal
keys in insertion order, and a VMA that vma_adjust touched goes after its
equals). pte_chain walks newest mapping first. anon_vma_chain and anon_vma
walk their lists in insertion order. anonmm starts at the mm its page names.
"""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES

VALUE = 136


def at(page: int) -> int:
    return WINDOW_START + page * 4096


def value(m: Machine, task: str, page: int) -> int:
    return m.read(task, at(page), 1, [])[0]


def lazyfree_shared(scheme: str, freer: str, split_parent: bool) -> tuple[int, int]:
    """p writes [0, 4) and forks c: both PTEs are dirty. Optionally p mprotects
    [1, 4), so its VMA holding page 2 has pgoff 1 and was put back in the tree.
    ``freer`` frees page 2 (its PTE is now clean, the other one stays dirty),
    and reclaim tries the page. Returns what p and c read at page 2."""
    m = Machine(Config(scheme=scheme, check=True))
    m.spawn("p")
    m.mmap("p", at(0), 4, "rw")
    m.write("p", at(0), 4, VALUE)
    m.fork("p", "c")
    if split_parent:
        m.mprotect("p", at(1), 3, "r")
    m.madvise(freer, at(2), 1, "free")
    m.reclaim(8)
    m.check()
    return value(m, "p", 2), value(m, "c", 2)


#: (scheme, freer, split_parent) -> (p, c) after reclaim; modern is 6.18's answer.
LAZYFREE = {
    # Without the split every list walks p first, pte_chain c first.
    ("modern", "c", False): (VALUE, VALUE),   # p's dirty PTE first: nothing dropped
    ("pte_chain", "c", False): (VALUE, 0),    # c's clean PTE first: dropped
    ("modern", "p", False): (0, VALUE),
    ("pte_chain", "p", False): (VALUE, VALUE),
    # With it, modern walks c first (pgoff 0 < 1); the lists and anonmm still p.
    ("modern", "p", True): (VALUE, VALUE),
    ("anon_vma_chain", "p", True): (0, VALUE),
    ("anon_vma", "p", True): (0, VALUE),
    ("anonmm", "p", True): (0, VALUE),
}


@pytest.mark.parametrize(("scheme", "freer", "split_parent"), sorted(LAZYFREE))
def test_failing_lazyfree_unmap_leaves_what_the_walk_order_dropped(scheme, freer,
                                                                  split_parent):
    assert lazyfree_shared(scheme, freer, split_parent) == LAZYFREE[scheme, freer, split_parent]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_lazyfree_divergence_is_only_walk_order(scheme):
    """Each case gives one of the two orders' answers, never anything else."""
    for freer in ("p", "c"):
        for split_parent in (False, True):
            got = lazyfree_shared(scheme, freer, split_parent)
            dropped = (0, VALUE) if freer == "p" else (VALUE, 0)
            assert got in ((VALUE, VALUE), dropped)


def mmlist_swapoff_reclaim(scheme: str, split_parent: bool) -> tuple[list[str], dict]:
    """p writes [10, 14), forks c, c writes its own [0, 4); reclaim swaps all 8.
    After swapoff (and a fresh area) a reclaim of 4 takes the oldest on the LRU.
    Returns mmlist's order after the first reclaim and the pages swapped at the end."""
    m = Machine(Config(scheme=scheme, check=True))
    m.swapon(64)
    m.spawn("p")
    m.mmap("p", at(10), 4, "rw")
    m.write("p", at(10), 4, 1)
    m.fork("p", "c")
    if split_parent:
        m.mprotect("p", at(10), 1, "r")  # p's VMA at page 10 goes back in the tree
    m.mmap("c", at(0), 4, "rw")
    m.write("c", at(0), 4, 2)
    m.reclaim(8)
    order = [name for mm in m.mmlist for name, t in m.tasks.items() if t.mm is mm]
    m.swapoff()
    m.swapon(64)
    m.reclaim(4)
    m.check()
    snap = m.snapshot("end")["tasks"]
    swapped = {task: sorted((int(a, 16) - WINDOW_START) // 4096
                            for a, p in v["pages"].items() if p["state"] == "swap")
               for task, v in snap.items()}
    return order, swapped


C_FIRST = (["p", "c"], {"c": [10, 11, 12, 13], "p": [10, 11, 12, 13]})
P_FIRST = (["c", "p"], {"c": [0, 1, 2, 3], "p": []})
#: (scheme, split_parent) -> (mmlist, swapped); modern is 6.18's answer.
MMLIST = {
    ("modern", False): P_FIRST,
    ("pte_chain", False): C_FIRST,
    ("modern", True): C_FIRST,
    ("anon_vma_chain", True): P_FIRST,
    ("anon_vma", True): P_FIRST,
    ("anonmm", True): P_FIRST,
}


@pytest.mark.parametrize(("scheme", "split_parent"), sorted(MMLIST))
def test_walk_order_sets_mmlist_order_and_so_what_reclaim_takes_after_swapoff(scheme,
                                                                             split_parent):
    assert mmlist_swapoff_reclaim(scheme, split_parent) == MMLIST[scheme, split_parent]
