# SPDX-License-Identifier: GPL-2.0-only
"""What one unit of kernel work costs in simulated time.

A critical section is held for the work done in it, counted by the model
itself (a walk's WalkStats charges, the avcs a fork links, the PTEs a fork
copies or an exit zaps) and priced here. The prices are orders of
magnitude for a 2010-era x86 server, not measurements: a cache miss to
DRAM is about 100 ns, so a step that touches one cold object costs about
that, and a page-table descent in a process whose tables are cold costs a
few misses. What the results depend on is their ratios (a walk's hold
against the work a CPU does between walks), which is why each is stated
with its reason; docs/experiments/contention.md shows which conclusions
survive a change of them.

All values are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True, kw_only=True)
class Costs:
    """Prices of the units of work the contention model counts."""

    #: a walk examines one VMA (or chain entry, or mm): follow the list entry,
    #: read the VMA's bounds and pgoff: one or two cold lines
    vma: float = 100e-9
    #: look at one PTE from a VMA: descend pgd/pud/pmd/pte of a process whose
    #: tables are not cached (page_referenced_one's "walking the page tables"),
    #: test and clear the young bit
    pte: float = 300e-9
    #: fixed part of a walk: page lock, page->mapping, lock and unlock
    walk: float = 200e-9
    #: link or unlink one list entry under an anon_vma lock (an avc, a VMA on
    #: Andrea's list, an anonmm on its head's list)
    link: float = 150e-9
    #: add an mm to, or take it off, mmlist
    list_op: float = 100e-9
    #: set one PTE and its rmap under the page table lock in a fault
    pte_set: float = 100e-9
    #: one COW fault outside any lock modelled: trap, allocate, copy 4 KiB
    fault: float = 2e-6
    #: fork copies one PTE (page_dup_rmap: an atomic mapcount add), both
    #: page table locks held
    copy_pte: float = 50e-9
    #: exit zaps one PTE (page_remove_rmap), the page table lock held
    zap_pte: float = 50e-9
    #: pte_chain: step over one pte_chain entry (page_remove_rmap searches
    #: the chain for its PTE; each entry is a cold slab object)
    chain: float = 80e-9
    #: fork outside the locks modelled (task, mm, page-table pages)
    fork: float = 30e-6
    #: exit outside the locks modelled
    exit: float = 20e-6

    def walk_hold(self, vmas: int, ptes: int) -> float:
        """How long a walk that examined vmas VMAs and ptes PTEs holds its lock."""
        return self.walk + vmas * self.vma + ptes * self.pte


DEFAULT_COSTS = Costs()
