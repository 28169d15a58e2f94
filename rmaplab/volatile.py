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
try_to_unmap, when every VMA its anon_vma walk meets is volatile (those
covering the page, mapping it or not, up to its last mapping:
rfc_is_volatile), unmaps it as usual, zaps every PTE on the anon_vma's list
that holds the page's swap entry (try_to_zap_one), clears the page's dirty
bit and returns TTU.DISCARD, so the page is freed with no writeout (counted
in `pgvolatile`); otherwise the page is swapped out as any other. The
first fault on an empty entry of a VM_VOLATILE VMA (populate's included)
takes mmap_sem for write (counted in `mmap_sem_write`), clears the flag and merges
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
from .mm_types import PTE_PRESENT, PTE_SHIFT, PTE_YOUNG, VM_VOLATILE, VMA
from .mmap import vma_merge_existing_range
from .rmap.core import find_mappings, linked_to

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


def anon_vma_walk(m: MMState, frame: int) -> list[VMA]:
    """The VMAs RFC v3's try_to_unmap_anon visits for frame, in its order:
    those on the list of the page's anon_vma (in Linux 3.6, the RFC's base,
    a list in the order of linking, each new link at the tail) whose range
    covers page->index, mapping the page or not.

    Worked out from the scheme-independent lineages, so that every scheme
    decides the same: tests/test_volatile.py checks it against the
    anon_vma_chain scheme's own lists. Cost: O(VMAs)."""
    ft = m.frames
    lineage = ft.lineage[frame]
    if lineage is None:
        return []
    index = int(ft.index[frame])
    seen: set[int] = set()
    found = []
    for t in m.tasks.values():
        mm = t.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        for v in mm.vmas:
            if 0 <= index - v.pgoff < v.end - v.start and linked_to(v, lineage):
                found.append(v)
    found.sort(key=lambda v: v.linked)
    return found


def rfc_is_volatile(m: MMState, frame: int) -> list[VMA] | None:
    """try_to_unmap_anon's is_volatile, as RFC v3's code decides it: the walk
    clears it at every VMA it meets that is not VM_VOLATILE, whether or not
    that VMA maps the page ("A volatile page will only be purged if ALL vmas
    pointing to it are VM_VOLATILE", checked before try_to_unmap_one looks
    for the PTE), and stops once the page is mapped nowhere, so VMAs after
    the last mapping are not asked. Returns the walk's VMAs (all of them:
    try_to_zap_one goes over the whole list) when the page is to be
    discarded, else None."""
    walk = anon_vma_walk(m, frame)
    want = (frame << PTE_SHIFT) | PTE_PRESENT
    mask = ~((1 << PTE_SHIFT) - 1) | PTE_PRESENT
    index = int(m.frames.index[frame])
    left = int(m.frames.mapcount[frame])
    volatile = True
    for v in walk:
        if left <= 0:
            break
        if not v.flags & VM_VOLATILE:
            volatile = False
        if int(v.pt[index - v.pgoff]) & mask == want:
            left -= 1
    if left > 0 or not volatile:
        return None  # a mapping the walk cannot reach would keep the page mapped
    return walk


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
