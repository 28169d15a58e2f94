# SPDX-License-Identifier: GPL-2.0-only
"""Volatile ranges: Minchan Kim's MADV_VOLATILE, "[RFC v3] Support volatile range
for anon vma" (linux-mm, 11 December 2012; docs/references.md).

madvise(MADV_VOLATILE) marks the range's VMAs VM_VOLATILE (splitting as
needed; VM_VOLATILE counts as VM_SPECIAL, so such VMAs never merge and
mlock leaves them unlocked) and fails with EINVAL on reaching a VM_LOCKED
VMA. The length is rounded down (the trace names whole pages, so nothing to
round). Reclaim does not activate a page whose page_referenced walk met a
young PTE in a VM_VOLATILE VMA (the walk ORs the flags of the VMAs that
referenced the page, and page_check_references reclaims on VM_VOLATILE);
try_to_unmap, when every VMA that maps a page is volatile, unmaps it as
usual, zaps the swap entries it just left behind (try_to_zap_one), clears
the page's dirty bit and returns TTU.DISCARD, so the page is freed with no
writeout (counted in `pgvolatile`); otherwise the page is swapped out as
any other. The first fault on an empty entry of a VM_VOLATILE VMA takes
mmap_sem for write (counted in `mmap_sem_write`), clears the flag and merges
the VMA with its neighbours, then faults normally: discarded pages read as
zero, kept pages keep their data.

As posted, the patch still needs a swap entry to unmap a page (Minchan
Kim's answer at the end of the thread): with no swap area nothing is
discarded. Config.volatile_noswap models the RFC's stated aim instead
(embedded systems without swap): anonymous LRU aging without swap, and a
discard path that needs no swap entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import NoMem
from .mm_types import PTE_YOUNG, VM_VOLATILE, VMA
from .mmap import vma_merge_existing_range
from .rmap.core import find_mappings

if TYPE_CHECKING:
    from .mm_state import MMState


def volatile_fault(m: MMState, vma: VMA) -> VMA:
    """handle_pte_fault's VM_VOLATILE branch: the first fault on an empty
    entry drops the flag and merges the VMA back. Returns the VMA that now
    covers the range (the merge may have absorbed vma)."""
    m.counters["mmap_sem_write"] += 1  # up_read, down_write: the cost that sank it
    flags = vma.flags & ~VM_VOLATILE
    try:
        merged = vma_merge_existing_range(m, None, vma, vma.start, vma.end, flags)
    except NoMem:
        merged = None  # the merge is an optimisation; the flag goes regardless
    if merged is not None:
        m.counters["vma_merge"] += 1
        return merged
    vma.flags = flags
    return vma


def all_mappers_volatile(vmas: list[VMA]) -> bool:
    """The RFC's is_volatile: every VMA that maps the page is VM_VOLATILE."""
    return bool(vmas) and all(v.flags & VM_VOLATILE for v in vmas)


def page_referenced_volatile(m: MMState, frame: int) -> bool:
    """The VM_VOLATILE bit of the vm_flags that page_referenced gathers (RFC
    v3's page_check_references reclaims on it): page_referenced_one ORs in
    the flags of each VMA whose PTE was young, so one young volatile mapping
    is enough, whatever the other mappings are. Uncharged: the kernel reads
    it off the walk that page_referenced makes anyway; call it before that
    walk clears the young bits."""
    for vma, vpn in find_mappings(m, frame):
        if vma.flags & VM_VOLATILE and int(vma.pt[vpn - vma.start]) & PTE_YOUNG:
            return True
    return False
