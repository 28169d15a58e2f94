# SPDX-License-Identifier: GPL-2.0-only
"""The swap area, swapon and swapoff (mm/swapfile.c).

One swap area of N slots (TRACE_FORMAT.md: `swapon pages`). swap_map
counts, per slot, the swap PTEs that name it; has_cache says the swap cache
holds a page for it (SWAP_HAS_CACHE). A slot is free when both are clear.
Slots are handed out lowest first.

mmlist is seed 004's: an mm joins it when it gets its first swap entry
(try_to_unmap_one puts it at the front, after init_mm; copy_page_range puts
a child right after its parent) and leaves it at mmput, after exit_mmap.
swapoff's try_to_unuse comes in two versions: ``2004``, seed 004's (for
each slot in turn, read the page and search the mms on mmlist from the
last place it was found, parent before child), and ``2019``, commit
b56a2d8af914 (one pass over each mm's page tables, bringing in every entry
it meets). Both are charged what they would scan (swapoff_ptes,
swapoff_mms), from an index of where each slot's PTEs are, so that the
quadratic one can be measured at sizes it would take hours to run.
drain_mmlist empties mmlist once no swap is in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import SysError
from .mm_types import PTE_SHIFT, PTE_SWAP
from .page_alloc import PG_DIRTY, PG_SWAPCACHE

if TYPE_CHECKING:
    from .machine import Machine
    from .mm_types import MM


class SwapArea:
    """swap_info_struct: slots, their counts, the swap cache and slot data."""

    __slots__ = ("nslots", "swap_map", "has_cache", "cache", "data", "inuse", "writeok")

    def __init__(self, nslots: int) -> None:
        self.nslots = nslots
        self.swap_map = np.zeros(nslots, np.int32)
        self.has_cache = np.zeros(nslots, bool)
        self.cache = np.full(nslots, -1, np.int64)  # frame in the swap cache, or -1
        self.data = np.zeros(nslots, np.uint8)  # what was written out
        self.inuse = 0
        self.writeok = True  # SWP_WRITEOK: cleared while swapoff empties the area

    def full(self) -> bool:
        """vm_swap_full: more than half the slots are in use."""
        return self.inuse * 2 > self.nslots

    def alloc_slot(self) -> int:
        """get_swap_page: the lowest free slot, or -1."""
        if not self.writeok:
            return -1
        free = np.flatnonzero((self.swap_map == 0) & ~self.has_cache)
        if not len(free):
            return -1
        slot = int(free[0])
        self.inuse += 1
        return slot

    def release_if_free(self, slot: int) -> None:
        if self.swap_map[slot] == 0 and not self.has_cache[slot]:
            self.inuse -= 1

    # -- references from PTEs -------------------------------------------------
    def duplicate(self, slots: np.ndarray, dst: MM, src: MM) -> None:
        """swap_duplicate at fork, and mmlist placement after the parent."""
        np.add.at(self.swap_map, slots, 1)

    def free_entries(self, m: Machine, slots: np.ndarray) -> None:
        """free_swap_and_cache for zapped swap PTEs: a slot left only to the
        cache frees its page too when nothing maps that page."""
        from .swap_state import delete_from_swap_cache
        for slot in slots.tolist():
            self.swap_map[slot] -= 1
            if self.swap_map[slot] == 0:
                f = int(self.cache[slot])
                if f >= 0 and m.frames.mapcount[f] == 0:
                    delete_from_swap_cache(m, f)
                else:
                    self.release_if_free(slot)

    def try_free_swap(self, m: Machine, frame: int) -> bool:
        """folio_free_swap: drop the swap cache of a page no swap PTE names."""
        from .swap_state import delete_from_swap_cache
        slot = int(m.frames.private[frame])
        if slot < 0 or self.swap_map[slot] != 0:
            return False
        m.frames.flags[frame] |= PG_DIRTY  # the only copy is in memory now
        delete_from_swap_cache(m, frame)
        return True

    def check(self, m: Machine) -> None:
        """swap_map = swap PTEs naming the slot; the cache and pages agree."""
        from .errors import ModelBug
        counts = np.zeros(self.nslots, np.int64)
        for t in m.tasks.values():
            mm = t.mm
            assert mm is not None  # every task in tasks is alive
            for vma in mm.vmas:
                pt = vma.pt
                sw = pt[(pt & PTE_SWAP) != 0] >> PTE_SHIFT
                if len(sw):
                    np.add.at(counts, sw, 1)
                if len(sw) and not mm.on_mmlist:
                    raise ModelBug(f"task {t.name} has swap entries but is not on mmlist")
        bad = np.flatnonzero(counts != self.swap_map)
        if len(bad):
            s = int(bad[0])
            raise ModelBug(f"slot {s}: swap_map {self.swap_map[s]} but {counts[s]} swap PTEs")
        ft = m.frames
        for slot in np.flatnonzero(self.has_cache).tolist():
            f = int(self.cache[slot])
            if f < 0 or not ft.flags[f] & PG_SWAPCACHE or ft.private[f] != slot:
                raise ModelBug(f"slot {slot}: swap cache page {f} does not point back")
        if (self.cache[~self.has_cache] != -1).any():
            raise ModelBug("a slot without SWAP_HAS_CACHE names a page")
        used = int(np.count_nonzero((self.swap_map > 0) | self.has_cache))
        if used != self.inuse:
            raise ModelBug(f"inuse {self.inuse} but {used} slots used")


def sys_swapon(m: Machine, pages: int) -> None:
    if m.swap is not None:
        raise SysError("EBUSY")
    m.swap = SwapArea(pages)


def sys_swapoff(m: Machine) -> None:
    """sys_swapoff: try_to_unuse brings every entry back, then the area goes."""
    if m.swap is None:
        raise SysError("EINVAL")
    from .errors import NoMem
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


def drain_mmlist(m: Machine) -> None:
    """drain_mmlist: with no swap in use, no mm needs to be on mmlist."""
    if m.swap is not None and m.swap.inuse:
        return
    for mm in m.mmlist:
        mm.on_mmlist = False
    m.mmlist.clear()


def mmlist_add_front(m: Machine, mm: MM) -> None:
    """try_to_unmap_one: list_add(&mm->mmlist, &init_mm.mmlist)."""
    if not mm.on_mmlist:
        m.mmlist.insert(0, mm)
        mm.on_mmlist = True


def mmlist_add_after(m: Machine, mm: MM, parent: MM) -> None:
    """copy_page_range: list_add(&dst->mmlist, &src->mmlist)."""
    if mm.on_mmlist:
        return
    if parent.on_mmlist:
        m.mmlist.insert(m.mmlist.index(parent) + 1, mm)
    else:  # cannot happen (the parent has the entry): keep the model going
        m.mmlist.insert(0, mm)
    mm.on_mmlist = True


def _holders(m: Machine) -> dict[int, list[tuple]]:
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


def try_to_unuse_2004(m: Machine) -> None:
    """try_to_unuse as seed 004 has it: slot by slot, mm by mm.

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
    from .swap_state import delete_from_swap_cache, swapin_to_cache, unuse_pte
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
        frame = swapin_to_cache(m, slot, None)
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


def try_to_unuse_2019(m: Machine) -> None:
    """try_to_unuse after commit b56a2d8af914: one pass over each mm on mmlist,
    every swap entry met brought in (unuse_mm -> unuse_pte_range), then
    whatever is left in the swap cache dropped. Cost: every PTE once."""
    from .swap_state import delete_from_swap_cache, swapin_to_cache, unuse_pte
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
                frame = swapin_to_cache(m, slot, None)
                if mm.dead:  # the OOM killer took this very mm to find the frame
                    break
                if frame < 0:
                    continue
                unuse_pte(m, vma, i, frame)
    for slot in np.flatnonzero(sw.has_cache).tolist():
        frame = int(sw.cache[slot])
        m.frames.flags[frame] |= PG_DIRTY  # folio_free_swap
        delete_from_swap_cache(m, frame)

