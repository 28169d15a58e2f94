# SPDX-License-Identifier: GPL-2.0-only
"""The swap cache and swap-in (mm/swap_state.c, do_swap_page in mm/memory.c).

A page in the swap cache has PG_swapcache, page->private = its slot, and
one reference held by the cache. do_swap_page finds the page in the swap
cache or reads it into a new one, maps it (exclusive if the swap PTE said
so: a page that was exclusive when it was unmapped), drops the PTE's swap
reference, and frees the swap cache at once when the area is more than
half full, the VMA is locked, or a write fault finds itself the only user
(should_try_to_free_swap). A write to a page that is not exclusive then
goes through do_wp_page like any COW. A scheme that could not find the page
at the faulting address (anonmm, when another mm maps it elsewhere) has a
private copy mapped instead (swapin_private_copy), here and in swapoff's
unuse_pte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import NoMem
from .mm_types import (
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_SHIFT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_WRITE,
    PTE_YOUNG,
    VM_LOCKED,
    VMA,
)
from .page_alloc import PG_ANON, PG_ANON_EXCLUSIVE, PG_DIRTY, PG_SWAPCACHE
from .rmap.core import page_add_anon_rmap, page_add_new_anon_rmap, put_pages

if TYPE_CHECKING:
    from .machine import Machine
    from .mm_types import MM


def get_free_frame(m: Machine, mm: MM | None) -> int:
    """alloc_page for a fault: reclaim first, then the OOM killer.

    Raises OomKill if mm's own task is the victim, NoMem if nothing is left
    to kill (swapoff with every task gone).
    """
    ft = m.frames
    while ft.nr_free < 1:
        m.reclaim_for(1)
        if ft.nr_free >= 1:
            break
        if not m.tasks:
            raise NoMem("page")
        m.out_of_memory(mm)
    return ft.alloc_one()


def add_to_swap_cache(m: Machine, frame: int, slot: int) -> None:
    sw = m.swap
    assert sw is not None  # a slot exists only while swap is on
    ft = m.frames
    sw.has_cache[slot] = True
    sw.cache[slot] = frame
    ft.flags[frame] |= PG_SWAPCACHE
    ft.private[frame] = slot
    ft.refcount[frame] += 1


def delete_from_swap_cache(m: Machine, frame: int) -> None:
    """__delete_from_swap_cache + put: the slot loses its cache reference."""
    sw = m.swap
    assert sw is not None  # a swap cache page exists only while swap is on
    ft = m.frames
    slot = int(ft.private[frame])
    sw.has_cache[slot] = False
    sw.cache[slot] = -1
    sw.release_if_free(slot)
    ft.flags[frame] &= ~np.uint32(PG_SWAPCACHE)
    ft.private[frame] = -1
    put_pages(m, np.array([frame], np.int64))


def swapin_to_cache(m: Machine, slot: int, mm: MM | None) -> int:
    """read_swap_cache_async: the slot's page, read into the cache if needed;
    -1 if the slot was freed while a frame was being found."""
    sw = m.swap
    assert sw is not None  # a slot exists only while swap is on
    f = int(sw.cache[slot])
    if f >= 0:
        return f
    f = get_free_frame(m, mm)
    if sw.swap_map[slot] == 0 and not sw.has_cache[slot]:
        # the OOM killer, finding us a frame, took the last holder of the slot
        m.frames.free(np.array([f], np.int64))
        return -1
    ft = m.frames
    ft.mapcount[f] = 0
    ft.refcount[f] = 0
    ft.flags[f] = PG_ANON
    ft.data[f] = sw.data[slot]
    add_to_swap_cache(m, f, slot)
    m.lru_add(np.array([f], np.int64))
    m.counters["pswpin"] += 1
    return f


def do_swap_page(m: Machine, vma: VMA, vpn: int, write: bool) -> None:
    """do_swap_page: map the page of the swap PTE at vpn."""
    i = vpn - vma.start
    pte = int(vma.pt[i])
    slot = pte >> PTE_SHIFT
    exclusive = bool(pte & PTE_SWP_EXCLUSIVE)
    frame = swapin_to_cache(m, slot, vma.mm)
    if frame < 0 or int(vma.pt[i]) != pte:  # our PTE holds the slot: cannot happen
        raise AssertionError("swap PTE changed under do_swap_page")
    ft = m.frames
    sw = m.swap
    assert sw is not None  # a swap PTE exists only while swap is on
    bits = PTE_PRESENT | PTE_YOUNG | (PTE_WRITE | PTE_DIRTY if write else 0)
    copied = swapin_private_copy(m, vma, i, frame, pte, bits, vma.mm)
    if copied < 0:
        raise AssertionError("swap PTE changed under do_swap_page")
    m.counters["pgfault"] += 1
    if copied:
        if sw.swap_map[slot] == 0 and (sw.full() or vma.flags & VM_LOCKED):
            delete_from_swap_cache(m, frame)
        return
    one = np.array([frame], np.int64)
    vpns = np.array([vpn], np.int64)
    ft.refcount[frame] += 1
    page_add_anon_rmap(m, one, vma, vpns, exclusive)
    new = (frame << PTE_SHIFT) | PTE_PRESENT | PTE_YOUNG
    if write and exclusive:
        new |= PTE_WRITE | PTE_DIRTY
    vma.pt[i] = new
    vma.mm.rss += 1
    vma.mm.swapents -= 1
    sw.swap_map[slot] -= 1
    if sw.swap_map[slot] == 0 and (sw.full() or vma.flags & VM_LOCKED
                                   or (write and ft.refcount[frame] == 2)):
        # folio_free_swap: with its swap copy gone the page is dirty, read
        # fault or not (MADV_FREE then treats it as dirty)
        ft.flags[frame] |= PG_DIRTY
        delete_from_swap_cache(m, frame)


def unuse_pte(m: Machine, vma: VMA, i: int, frame: int) -> None:
    """unuse_pte (swapoff): the swap PTE at index i now maps frame."""
    ft = m.frames
    sw = m.swap
    assert sw is not None  # swapoff runs with the area still set
    pte = int(vma.pt[i])
    slot = pte >> PTE_SHIFT
    if not pte & PTE_SWAP or int(sw.cache[slot]) != frame:
        return  # no longer this slot's entry (its mm went meanwhile)
    exclusive = bool(pte & PTE_SWP_EXCLUSIVE)
    if swapin_private_copy(m, vma, i, frame, pte, PTE_PRESENT, None):
        return  # a private copy maps it (anonmm), or its mm went meanwhile
    ft.refcount[frame] += 1
    page_add_anon_rmap(m, np.array([frame], np.int64), vma,
                       np.array([vma.start + i], np.int64), exclusive)
    vma.pt[i] = (frame << PTE_SHIFT) | PTE_PRESENT
    vma.mm.rss += 1
    vma.mm.swapents -= 1
    sw.swap_map[slot] -= 1


def swapin_private_copy(m: Machine, vma: VMA, i: int, frame: int, pte: int, bits: int,
                        mm: MM | None) -> int:
    """Map a private copy of the swap cache page frame at index i of vma, if
    the rmap scheme could not find frame there (anonmm: another mm maps it at
    another address; REFERENCES.md row 8). Returns 1 when a copy now maps the
    PTE (the slot lost its reference), 0 when no copy is needed, -1 when the
    PTE changed while a frame was found (its mm was killed). The new frame
    comes as any fault's does (reclaim, then the OOM killer, sparing mm's
    task unless it is the victim, as get_free_frame says)."""
    one = np.array([frame], np.int64)
    vpns = np.array([vma.start + i], np.int64)
    if not m.rmap.needs_private_copy(one, vma, vpns, False)[0]:
        return 0
    prev = m.pinned
    m.pinned = one  # type: ignore[assignment]  # reclaim must not take the page we copy
    try:
        g = get_free_frame(m, mm)
    finally:
        m.pinned = prev
    ft = m.frames
    if vma.dead or int(vma.pt[i]) != pte or \
            not m.rmap.needs_private_copy(one, vma, vpns, False)[0]:
        ft.free(np.array([g], np.int64))
        return -1 if vma.dead or int(vma.pt[i]) != pte else 0
    new = np.array([g], np.int64)
    ft.data[g] = ft.data[frame]
    vma.pt[i] = (g << PTE_SHIFT) | bits
    page_add_new_anon_rmap(m, new, vma, vpns)
    m.lru_add(new)
    vma.mm.rss += 1
    vma.mm.swapents -= 1
    sw = m.swap
    assert sw is not None
    sw.swap_map[pte >> PTE_SHIFT] -= 1
    m.counters["early_cow"] += 1
    return 1


__all__ = [
    "PG_ANON_EXCLUSIVE",
    "add_to_swap_cache",
    "delete_from_swap_cache",
    "do_swap_page",
    "get_free_frame",
    "swapin_private_copy",
    "swapin_to_cache",
    "unuse_pte",
]
