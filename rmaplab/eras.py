# SPDX-License-Identifier: GPL-2.0-only
"""The kernel tree each rmap scheme stands for, and that tree's rules.

Written once and read by era mode (Config(era="historical"): each scheme
runs with the VMA merge, COW reuse, mlock and reclaim rules of its own
tree), by the contention model's lock profiles (the kernel they name) and
by docs/eras.md, which gives the source of every rule.

In the default era ("today") every scheme runs on 6.18's rules, so that
schemes compare on identical workloads and results do not depend on the
scheme; "historical" answers what the scheme's own kernel did with the
trace, and is exempt from that contract.

The mm modules never test the era or the scheme: they consult the
EraRules object the state holds (MMState.rules), one attribute read per
decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, TypeGuard

Era = Literal["today", "historical"]
ERAS: tuple[Era, ...] = ("today", "historical")

#: How is_mergeable_anon_vma decides whether two ranges' anon_vmas allow a
#: merge: "singular" (2011 on: one side may lack an anon_vma only if the
#: other's chain is singular), "either" (2.6.7 to 2.6.38: either side
#: without one, or both the same), "none" (before anon_vma: no test).
MergeRule = Literal["singular", "either", "none"]
#: do_wp_page's reuse test: "exclusive" (PG_anon_exclusive, 2022 on),
#: "swapcount" (reuse_swap_page of 2.6.34: the swap cache is freed on
#: reuse), "page_count" (can_share_swap_page of 2.6.0 to 2.6.9: a page in
#: the swap cache with no other swap reference is reused and stays in it).
CowRule = Literal["exclusive", "swapcount", "page_count"]


def is_era(value: object) -> TypeGuard[Era]:
    """value names an era."""
    return value in ERAS


@dataclass(frozen=True, slots=True, kw_only=True)
class EraRules:
    """What the VMA layer, the fault path and reclaim ask of a kernel tree.

    kernel: the tree. merge: is_mergeable_anon_vma's rule (MergeRule).
    merge_by_anon_vma: the anon_vma identity merges compare is the scheme's
    own (the 2004 anon_vma, one per fork family) rather than the lineage
    6.18 would give. lend_forked: find_mergeable_anon_vma may lend the
    anon_vma of a VMA that came from a parent (before commit d0e9fe1758f2).
    cull_mlocked: reclaim never meets mlocked pages (the unevictable list,
    2.6.28); without it they are scanned, given a slot, and try_to_unmap
    fails on VM_LOCKED. activate_frees_swap: a page reclaim keeps gives its
    slot back when swap is half full (2.6.28). swapin_free_locked /
    swapin_free_write: do_swap_page frees the slot for a VM_LOCKED VMA
    (2.6.28) / for a write to a page nobody else holds (2.6.34's
    reuse_swap_page, 6.18's should_try_to_free_swap; 2.6.9 kept it).
    cow: do_wp_page's reuse test (CowRule). mlock_merges: mlock_fixup
    merges the range with its neighbours (vma_merge); 2.6.9 and before only
    split.
    """

    kernel: str
    merge: MergeRule = "singular"
    merge_by_anon_vma: bool = False
    lend_forked: bool = False
    cull_mlocked: bool = True
    activate_frees_swap: bool = True
    swapin_free_locked: bool = True
    swapin_free_write: bool = True
    cow: CowRule = "exclusive"
    mlock_merges: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    """One scheme's kernel tree: which, whose, when, and its rules."""

    scheme: str
    kernel: str
    author: str
    date: str
    rules: EraRules
    #: pte_chain only: PTEs one chain node holds in this tree (the model's
    #: chains hold one, as the tree named here did)
    ptes_per_node: int = 0


TODAY = EraRules(kernel="6.18")

#: 2.6.9's rules: the anon_vma merge test, but before 2.6.28 (no
#: unevictable list, no swap freed on activation or mlocked swap-in) and
#: before reuse_swap_page and PG_anon_exclusive.
_2_6_9 = EraRules(kernel="2.6.9", merge="either", merge_by_anon_vma=True, lend_forked=True,
                  cull_mlocked=False, activate_frees_swap=False, swapin_free_locked=False,
                  swapin_free_write=False, cow="page_count", mlock_merges=False)

#: The table, read-only: scheme -> its tree. The kernels before anon_vma
#: (2.6.7) had 2.6.9's rules but no anon_vma test in their merges.
TREES: Mapping[str, Tree] = MappingProxyType({t.scheme: t for t in (
    Tree(scheme="pte_chain", kernel="2.5.27", author="Rik van Riel", date="July 2002",
         rules=replace(_2_6_9, kernel="2.5.27", merge="none", merge_by_anon_vma=False,
                       lend_forked=False),
         ptes_per_node=1),
    Tree(scheme="anonmm", kernel="2.6.6-rc3-mm2", author="Hugh Dickins", date="May 2004",
         rules=replace(_2_6_9, kernel="2.6.6-rc3-mm2", merge="none", merge_by_anon_vma=False,
                       lend_forked=False)),
    Tree(scheme="anon_vma", kernel="2.6.9", author="Andrea Arcangeli", date="October 2004",
         rules=_2_6_9),
    Tree(scheme="anon_vma_chain", kernel="2.6.34", author="Rik van Riel", date="May 2010",
         rules=EraRules(kernel="2.6.34", merge="either", cow="swapcount")),
    Tree(scheme="modern", kernel="6.18", author="(today's kernel)", date="November 2025",
         rules=TODAY),
)})

#: The 2.5.6x kernels of Martin Bligh's 2003 NUMA-Q profiles packed NRPTE
#: PTE pointers into one cache-line-sized node: (32 - 4) / 4 on their
#: Pentium III Xeons (32-byte lines, 32-bit pte_addr_t).
PTE_CHAIN_2_5_6X = Tree(scheme="pte_chain", kernel="2.5.6x", author="Andrew Morton",
                        date="February 2003", rules=TREES["pte_chain"].rules,
                        ptes_per_node=7)


def tree(scheme: str) -> Tree:
    """The tree scheme stands for. Raises ValueError for an unknown scheme."""
    try:
        return TREES[scheme]
    except KeyError:
        raise ValueError(f"no kernel tree for scheme {scheme!r}; known: "
                         f"{', '.join(TREES)}") from None


def rules_for(scheme: str, era: Era) -> EraRules:
    """The rules a machine running scheme in era follows: today's in the
    default era; the scheme's own tree's in "historical". A scheme the
    table does not pin (an opt-in variant) runs today's."""
    if era == "today":
        return TODAY
    t = TREES.get(scheme)
    return t.rules if t is not None else TODAY
