# SPDX-License-Identifier: GPL-2.0-only
"""mremap (mm/mremap.c, Linux 6.18) for private anonymous memory.

Without a new address: the same length is a no-op (addr must be in a VMA,
else EFAULT); a shrink unmaps the tail; a grow needs the old range inside
one VMA (EFAULT otherwise) and ending at its end with a free gap after it
(ENOMEM otherwise), and then merges like a new range (vma_merge_extend).
With a new address (MREMAP_MAYMOVE|MREMAP_FIXED): overlap of old and new
ranges is EINVAL; equal lengths may move several VMAs (6.17+, remap_move),
each VMA piece to the same offset, holes opposite left alone; otherwise the
old range must lie in one VMA. The destination is unmapped first, then
copy_vma (a merge, or a new VMA with anon_vma_clone; an unfaulted VMA gets
its pgoff reset so it can merge), move_page_tables, and the old range is
unmapped. Pages keep their page->index, so every scheme still finds them
(the rmap hook ptes_moved lets pte_chain and anonmm fix up theirs), except
that anonmm cannot find a page shared with another mm at a new address:
such pages get private copies at move time (early COW, as Hugh Dickins'
mremap patch after anonmm did in 2004; docs/references.md), whose frames
are found before anything moves. A locked VMA populates the part a grow
added.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from .errors import NoMem, SysError
from .memory import early_cow
from .mlock import mm_populate
from .mm_types import MM, PTE_PRESENT, PTE_SHIFT, VM_LOCKED, VMA
from .mmap import anon_id, do_vmi_munmap, vm_area_dup, vm_area_free, vma_merge_new_range
from .vmscan import try_to_free_pages

if TYPE_CHECKING:
    from .mm_state import MMState


def do_mremap(m: MMState, mm: MM, addr: int, old: int, new: int, new_addr: int | None) -> None:
    """sys_mremap; all values in pages."""
    if new_addr is not None:
        if new_addr < addr + old and addr < new_addr + new:
            raise SysError("EINVAL")
        if old == new:
            remap_move(m, mm, addr, old, new_addr)
            return
        # the part that will move must lie in one VMA, checked before anything
        vma = mm.vma_lookup(addr)
        if vma is None or addr + min(old, new) > vma.end:
            raise SysError("EFAULT")
        do_vmi_munmap(m, mm, new_addr, new_addr + new)
        if old > new:
            do_vmi_munmap(m, mm, addr + new, addr + old)
            old = new
        vma = mm.vma_lookup(addr)
        assert vma is not None  # neither unmapped range holds addr
        move_vma(m, vma, addr, old, new, new_addr)
        return
    vma = mm.vma_lookup(addr)
    if vma is None:
        raise SysError("EFAULT")
    if new == old:
        return
    if new < old:
        do_vmi_munmap(m, mm, addr + new, addr + old)
        return
    if addr + old > vma.end:
        raise SysError("EFAULT")
    if addr + old != vma.end or mm.vmas_in(vma.end, addr + new):
        raise SysError("ENOMEM")
    grow_in_place(m, vma, addr + new)


def grow_in_place(m: MMState, vma: VMA, new_end: int) -> None:
    """vma_merge_extend: vma (and maybe its next neighbour) take [end, new_end)."""
    old_end = vma.end
    target = vma_merge_new_range(m, vma.mm, old_end, new_end, vma.flags,
                                 vma.pgoff + (old_end - vma.start), src_lineage=anon_id(m, vma))
    if target is None:
        raise SysError("ENOMEM")
    if target.flags & VM_LOCKED:
        mm_populate(m, target.mm, old_end, new_end, ignore_errors=True)


def remap_move(m: MMState, mm: MM, addr: int, npages: int, new_addr: int) -> None:
    """remap_move: move every VMA piece of [addr, addr+npages) by the same offset."""
    first = mm.vma_lookup(addr)
    if first is None:
        raise SysError("EFAULT")
    pieces = [(max(v.start, addr), min(v.end, addr + npages))
              for v in mm.vmas_in(addr, addr + npages)]
    for lo, hi in pieces:
        dst = new_addr + (lo - addr)
        n = hi - lo
        do_vmi_munmap(m, mm, dst, dst + n)
        vma = mm.vma_lookup(lo)
        assert vma is not None  # [dst, dst + n) is apart from the old range
        move_vma(m, vma, lo, n, n, dst)


def copy_vma(m: MMState, vma: VMA, start: int, npages: int, pgoff: int) -> VMA:
    """copy_vma: the VMA at [start, start+npages) that will receive vma's PTEs."""
    mm = vma.mm
    if vma.lineage is None:
        pgoff = start  # an unfaulted anon VMA follows its new address, to merge
    new_vma = vma_merge_new_range(m, mm, start, start + npages, vma.flags, pgoff,
                                  copied_from=vma)
    if new_vma is not None:
        return new_vma
    new_vma = vm_area_dup(m, vma)
    new_vma.start, new_vma.end, new_vma.pgoff = start, start + npages, pgoff
    new_vma.pt = np.zeros(npages, np.int64)
    try:
        m.rmap.vma_clone(new_vma, vma)
    except BaseException:
        vm_area_free(m, new_vma)
        raise
    mm.link(new_vma)
    return new_vma


def move_vma(m: MMState, vma: VMA, addr: int, old: int, new: int, new_addr: int) -> None:
    """move_vma: copy_vma, move_page_tables, then unmap the old range."""
    mm = vma.mm
    reserve_early_cow(m, vma, addr, old, new_addr)
    new_vma = copy_vma(m, vma, new_addr, new, vma.pgoff + (addr - vma.start))
    src = mm.vma_lookup(addr)  # copy_vma may have merged into vma's neighbourhood
    assert src is not None  # a merge moves addr to another VMA, never unmaps it
    move_page_tables(m, src, addr, new_vma, new_addr, old)
    # the kernel keeps the (now empty) old range mapped when this fails, and succeeds
    with contextlib.suppress(NoMem):
        do_vmi_munmap(m, mm, addr, addr + old)
    if new_vma.flags & VM_LOCKED and new > old:
        mm_populate(m, mm, new_addr + old, new_addr + new, ignore_errors=True)


def _early_cow_needed(m: MMState, vma: VMA, addr: int, n: int, new_addr: int) -> np.ndarray:
    """Indexes (in vma) of the present pages of [addr, addr+n) that the rmap
    scheme could not find at new_addr (anonmm: shared with another mm)."""
    i0 = addr - vma.start
    seg = vma.pt[i0:i0 + n]
    idx = np.flatnonzero(((seg & PTE_PRESENT) != 0) & ((seg >> PTE_SHIFT) != 0))
    if not len(idx):
        return idx
    need = m.rmap.needs_private_copy(seg[idx] >> PTE_SHIFT, vma, new_addr + idx, True)
    return idx[need] + i0


def reserve_early_cow(m: MMState, vma: VMA, addr: int, n: int, new_addr: int) -> None:
    """Frames for move_page_tables' early COW, found before anything moves:
    reclaim if short, else ENOMEM (docs/divergences.md; anonmm only)."""
    k = len(_early_cow_needed(m, vma, addr, n, new_addr))
    if k > m.frames.nr_free:
        try_to_free_pages(m, k - m.frames.nr_free)
        k = len(_early_cow_needed(m, vma, addr, n, new_addr))
        if k > m.frames.nr_free:
            raise SysError("ENOMEM")


def move_page_tables(m: MMState, src: VMA, addr: int, dst: VMA, new_addr: int, n: int) -> None:
    """move_ptes: the PTEs of [addr, addr+n) go to [new_addr, new_addr+n) as they are;
    then pages the scheme could not find there get private copies (anonmm)."""
    s0 = addr - src.start
    d0 = new_addr - dst.start
    seg = src.pt[s0:s0 + n].copy()
    src.pt[s0:s0 + n] = 0
    dst.pt[d0:d0 + n] = seg
    nz = np.flatnonzero(seg)
    if len(nz):
        ptes = seg[nz]
        anon = ((ptes & PTE_PRESENT) != 0) & ((ptes >> PTE_SHIFT) != 0)
        if anon.any():
            frames = ptes[anon] >> PTE_SHIFT
            new_vpns = new_addr + nz[anon]
            need = m.rmap.needs_private_copy(frames, dst, new_vpns, True)
            m.rmap.ptes_moved(frames, src, addr + nz[anon], dst, new_vpns)
            if need.any():
                early_cow(m, dst, new_vpns[need] - dst.start)
