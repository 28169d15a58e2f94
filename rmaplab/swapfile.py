# SPDX-License-Identifier: GPL-2.0-only
"""The swap area, swapon and swapoff (mm/swapfile.c).

One swap area of N slots (docs/trace-format.md: `swapon pages`), its
structure (SwapArea, swap_info_struct) in mm_state.py: swap_map counts, per
slot, the swap PTEs that name it; has_cache says the swap cache holds a
page for it (SWAP_HAS_CACHE). A slot is free when both are clear. Slots
are handed out lowest first.

mmlist is that of Hugh Dickins' mmlist rework (October 2004; its updates
are in swap.py): an mm joins it when it gets its first swap entry
(try_to_unmap_one puts it at the front, after init_mm; copy_page_range
puts a child right after its parent) and leaves it at mmput, after
exit_mmap. swapoff's try_to_unuse comes in two versions: ``2004``, that
rework's (for each slot in turn, read the page and search the mms on
mmlist from the last place it was found, parent before child), and
``2019``, commit b56a2d8af914 (one pass over each mm's page tables,
bringing in every entry it meets). Both are charged what they would scan
(swapoff_ptes, swapoff_mms), from an index of where each slot's PTEs are,
so that the quadratic one can be measured at sizes it would take hours to
run. drain_mmlist empties mmlist once no swap is in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import swap_state  # swapin_to_cache is looked up at call time: tests wrap it
from .errors import NoMem, SysError
from .mm_state import SwapArea
from .mm_types import PTE_SHIFT, PTE_SWAP
from .page_alloc import PG_DIRTY
from .swap import delete_from_swap_cache, drain_mmlist, mmlist_add_after, mmlist_add_front
from .swap_state import unuse_pte

if TYPE_CHECKING:
    from .mm_state import MMState
    from .mm_types import MM


def sys_swapon(m: MMState, pages: int) -> None:
    if m.swap is not None:
        raise SysError("EBUSY")
    m.swap = SwapArea(pages)


def sys_swapoff(m: MMState) -> None:
    """sys_swapoff: try_to_unuse brings every entry back, then the area goes."""
    if m.swap is None:
        raise SysError("EINVAL")
    m.swap.writeok = False  # reclaim must not put pages back while we empty it
    unuse = try_to_unuse_2019 if m.config.unuse == "2019" else try_to_unuse_2004
    try:
        # Reclaim may still unmap a swap-cache page into its slot meanwhile:
        # like the kernel, go round again until nothing is in use.
        left = None
        while m.swap.inuse:
            if left is not None and m.swap.inuse >= left:
                raise NoMem("swapoff made no progress")
            left = m.swap.inuse
            unuse(m)
    except NoMem:
        m.swap.writeok = True  # out of memory with nothing left to kill: the area stays
        raise
    assert m.swap.inuse == 0, "try_to_unuse left slots in use"
    drain_mmlist(m)
    m.swap = None


def _holders(m: MMState) -> dict[int, list[tuple]]:
    """slot -> [(mm, vma, index in vma)] in mmlist order: where each slot's PTEs are."""
    out: dict[int, list[tuple]] = {}
    for mm in m.mmlist:
        for vma in mm.vmas:
            pt = vma.pt
            idx = np.flatnonzero(pt & PTE_SWAP)
            for i, slot in zip(idx.tolist(), (pt[idx] >> PTE_SHIFT).tolist()):
                out.setdefault(slot, []).append((mm, vma, i))
    return out


def _anon_ptes(mm: MM) -> int:
    return sum(v.end - v.start for v in mm.vmas if v.lineage is not None)


def try_to_unuse_2004(m: MMState) -> None:
    """try_to_unuse as Hugh Dickins' 2004 mmlist rework has it: slot by slot, mm by mm.

    For each slot in use: read its page into the swap cache, then visit mms
    from start_mm on around mmlist (init_mm is the list head: nothing to
    scan there), skipping mms whose users dropped to zero, until no swap PTE
    names the slot. In each mm, unuse_mm scans its anonymous VMAs' page
    tables in order until it finds the entry; once the page has been mapped
    somewhere (page->mapping set), only one PTE per VMA is looked at. Where
    the next slot starts (set_start_mm): unchanged if start_mm held this
    one, else the first mm after it that did; and passing init_mm re-arms
    that, so the first holder after the wrap becomes the start. A start_mm
    whose task has gone is let go of: the search starts from init_mm.
    Cost charged: swapoff_mms (mms visited), swapoff_ptes (PTEs looked at).
    """
    sw = m.swap
    assert sw is not None  # swapoff runs with the area still on
    holders = _holders(m)
    ring: list = [None] + list(m.mmlist)  # None stands for init_mm, the list head
    # What a miss costs in each mm (its anonymous VMAs, and their PTEs),
    # computed once: nothing here changes an mm's VMAs (an mm the OOM killer
    # takes is dead and skipped), and recomputing it for every slot and mm
    # was most of this function's time at a thousand mms.
    miss = {id(mm): (sum(1 for v in mm.vmas if v.lineage is not None), _anon_ptes(mm))
            for mm in ring[1:]}
    start = 0
    c = m.counters
    for slot in np.flatnonzero((sw.swap_map > 0) | sw.has_cache).tolist():
        frame = swap_state.swapin_to_cache(m, slot, None)
        held = ring[start]
        if held is not None and (held.dead or held.mm_users == 0):
            start = 0  # don't hold on to a start_mm that is exiting: back to init_mm
        if frame < 0:
            continue
        per_mm: dict[int, list] = {}
        for h in holders.get(slot, []):
            per_mm.setdefault(id(h[0]), []).append(h)
        mapped = False
        set_start = True
        new_start = start
        for step in range(len(ring)):
            if sw.swap_map[slot] == 0:
                break
            k = (start + step) % len(ring)
            mm = ring[k]
            if mm is None:
                set_start = True  # init_mm: shmem's turn, and the start re-armed
                continue
            if mm.dead or mm.mm_users == 0:
                continue
            c["swapoff_mms"] += 1
            hs = per_mm.get(id(mm))
            if hs:
                for _, vma, i in hs:
                    c["swapoff_ptes"] += 1 if mapped else _scan_cost(mm, vma, i)
                    unuse_pte(m, vma, i, frame)
                mapped = True
            else:
                c["swapoff_ptes"] += miss[id(mm)][0 if mapped else 1]
            if step == 0:
                set_start = not hs  # start_mm held it: keep it as the start
            elif hs and set_start:
                new_start, set_start = k, False
        start = new_start
        if sw.has_cache[slot]:
            m.frames.flags[frame] |= PG_DIRTY  # folio_free_swap
            delete_from_swap_cache(m, frame)


def _scan_cost(mm: MM, vma, i: int) -> int:
    """PTEs unuse_mm looks at before it finds index i of vma (VMAs in order)."""
    n = 0
    for v in mm.vmas:
        if v is vma:
            return n + i + 1
        if v.lineage is not None:
            n += v.end - v.start
    return n


def try_to_unuse_2019(m: MMState) -> None:
    """try_to_unuse after commit b56a2d8af914: one pass over each mm on mmlist,
    every swap entry met brought in (unuse_mm -> unuse_pte_range), then
    whatever is left in the swap cache dropped. Cost: every PTE once."""
    sw = m.swap
    assert sw is not None  # swapoff runs with the area still on
    c = m.counters
    for mm in list(m.mmlist):
        if mm.dead or mm.mm_users == 0:
            continue
        c["swapoff_mms"] += 1
        for vma in list(mm.vmas):
            if vma.lineage is None or mm.dead:
                continue
            c["swapoff_ptes"] += vma.end - vma.start
            for i in np.flatnonzero(vma.pt & PTE_SWAP).tolist():
                slot = int(vma.pt[i]) >> PTE_SHIFT
                frame = swap_state.swapin_to_cache(m, slot, None)
                if mm.dead:  # the OOM killer took this very mm to find the frame
                    break
                if frame < 0:
                    continue
                unuse_pte(m, vma, i, frame)
    for slot in np.flatnonzero(sw.has_cache).tolist():
        frame = int(sw.cache[slot])
        m.frames.flags[frame] |= PG_DIRTY  # folio_free_swap
        delete_from_swap_cache(m, frame)


__all__ = [  # SwapArea and the mmlist helpers are re-exported from below
    "SwapArea",
    "drain_mmlist",
    "mmlist_add_after",
    "mmlist_add_front",
    "sys_swapoff",
    "sys_swapon",
    "try_to_unuse_2004",
    "try_to_unuse_2019",
]
