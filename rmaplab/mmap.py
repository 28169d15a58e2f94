# SPDX-License-Identifier: GPL-2.0-only
"""VMA surgery: allocation, linking, split, merge, expand, munmap, mmap.

Models mm/vma.c and mm/mmap.c of Linux 6.18 for private anonymous memory:
__split_vma, vma_merge_new_range, vma_merge_existing_range (through
vma_modify), vma_expand, dup_anon_vma, do_vmi_munmap, mmap_region and
copy_vma. Each is a sequence of explicit steps (allocate, clone the
anon_vma links, adjust bounds, link, unlink, free) so that a later
concurrency model can interleave rmap walks at their boundaries.

Merge compatibility is decided on scheme-independent facts kept on every
VMA (``lineage``: the anon_vma a 6.18 kernel would give the VMA, as an
identity token; ``forked``: its anon_vma_chain is not singular because it
came from a parent), so every rmap scheme sees the same VMAs. In era mode
the state's rules (eras.EraRules) say which is_mergeable_anon_vma the
scheme's own kernel had, and whether it compared the scheme's anon_vma
(2.6.9's, one per fork family) instead (docs/eras.md).

Invariants: VMAs of an mm never overlap and are sorted by start; vma.pt
has one entry per page of the VMA; a VMA with pages has a lineage.
Allocation failures raise NoMem before anything visible changed, except
where the kernel itself leaves work done (a munmap or mprotect split that
already happened stays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import SysError
from .mm_types import (
    MM,
    VM_ACCOUNT,
    VM_LOCK_RMAP,
    VM_LOCKED,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_VOLATILE,
    VM_WRITE,
    VMA,
)
from .pgtable import zap_vma_range

if TYPE_CHECKING:
    from .mm_state import MMState

VM_SPECIAL = VM_VOLATILE  # the only special flag private anonymous VMAs get here


# -- allocation and linking ----------------------------------------------------

def vm_area_alloc(m: MMState, mm: MM, start: int, end: int, pgoff: int, flags: int) -> VMA:
    """vm_area_alloc. Cost: O(pages) for the zeroed page-table array."""
    m.slab.alloc("vma")
    vma = VMA(mm, start, end, pgoff, flags)
    m.vma_serial += 1
    vma.serial = m.vma_serial
    return vma


def vm_area_dup(m: MMState, vma: VMA) -> VMA:
    """vm_area_dup: a copy of vma's fields, no page tables, same anon_vma pointer."""
    m.slab.alloc("vma")
    new = VMA.__new__(VMA)
    new.mm = vma.mm
    new.start, new.end, new.pgoff, new.flags = vma.start, vma.end, vma.pgoff, vma.flags
    new.pt = None  # type: ignore[assignment]  # set by the caller
    new.anon_vma = vma.anon_vma
    new.avcs = []
    new.lineage = vma.lineage
    new.forked = vma.forked
    new.rmap = None
    new.dead = False
    m.vma_serial += 1
    new.serial = m.vma_serial
    new.linked = new.serial  # the caller links it now (anon_vma_clone, anon_vma_fork)
    return new


def vm_area_free(m: MMState, vma: VMA) -> None:
    vma.dead = True
    m.slab.free("vma")


def set_range(m: MMState, vma: VMA, start: int, end: int, pgoff: int) -> None:
    """Change a linked VMA's bounds (vma_set_range), keeping the tree sorted.

    The caller has already reshaped vma.pt to end - start entries.
    """
    rmap = m.rmap
    rmap.vma_adjust_begin(vma)
    m.surgery_point("vma_adjust:begin", vma)
    if start != vma.start:
        vma.mm.unlink(vma)
        vma.start, vma.end, vma.pgoff = start, end, pgoff
        vma.mm.link(vma)
    else:
        vma.end, vma.pgoff = end, pgoff
    m.surgery_point("vma_adjust:bounds", vma)
    rmap.vma_adjust_end(vma)


def dup_anon_vma(m: MMState, dst: VMA, src: VMA) -> bool:
    """dup_anon_vma: dst, about to take pages of src, gets src's anon_vmas.

    Returns True when it linked something (for the caller's unwinding).
    """
    if src.lineage is None or dst.lineage is not None:
        return False
    if m.config.vm_lock_rmap:
        # VM_LOCK_RMAP of Rik van Riel's anon_vma_chain patch (January 2010):
        # hide the importer from walks until vma_adjust is done
        dst.flags |= VM_LOCK_RMAP
    dst.anon_vma = src.anon_vma
    try:
        m.rmap.vma_clone(dst, src)
    except BaseException:
        dst.anon_vma = None
        importer_ready(dst)
        raise
    dst.lineage = src.lineage
    dst.forked = src.forked
    m.vma_serial += 1
    dst.linked = m.vma_serial  # at the tail of src's anon_vmas' lists
    return True


def importer_ready(vma: VMA) -> None:
    """VM_LOCK_RMAP (the anon_vma_chain patch, 2010): walks may follow the
    importer again, vma_adjust having set every bound or the import failed
    (a no-op unless dup_anon_vma flagged it)."""
    vma.flags &= ~VM_LOCK_RMAP


def undo_dup_anon_vma(m: MMState, dst: VMA) -> None:
    m.rmap.vma_unlink(dst)
    importer_ready(dst)
    dst.lineage = None
    dst.forked = False


# -- merge rules -----------------------------------------------------------------

def had_uncowed_parents(vma: VMA | None) -> bool:
    """vma_had_uncowed_parents: its anon_vma_chain is not singular."""
    return vma is not None and vma.lineage is not None and vma.forked


def anon_id(m: MMState, vma: VMA):
    """The anon_vma identity merges compare: the lineage, or in an era whose
    kernel compared the scheme's own anon_vma (2.6.9), that."""
    return vma.anon_vma if m.rules.merge_by_anon_vma else vma.lineage


def is_mergeable_anon_vma(m: MMState, src_id, src: VMA | None, tgt: VMA) -> bool:
    """is_mergeable_anon_vma (mm/vma.c): may src's pages join tgt's anon_vma?

    src_id is the range's anon_vma identity (anon_id). The era's rule:
    6.18's (one side without an anon_vma only when the other's chain is
    singular), 2.6.9's and 2.6.34's (either side without one, or the same),
    or none (the kernels before anon_vma).
    """
    rule = m.rules.merge
    tgt_l = anon_id(m, tgt)
    if rule == "singular":
        if tgt_l is None and src_id is not None:
            return not had_uncowed_parents(src)
        if tgt_l is not None and src_id is None:
            return not had_uncowed_parents(tgt)
        return src_id is tgt_l
    if rule == "either":
        return src_id is None or tgt_l is None or src_id is tgt_l
    return True


def same_flags(a: int, b: int) -> bool:
    return a == b


def can_merge_after(m: MMState, prev: VMA, flags: int, pgoff: int, src_id,
                    src: VMA | None) -> bool:
    """can_vma_merge_after: the range may be appended to prev (at a linear
    offset, except in the kernels before anon_vma: merge rule "none")."""
    return (same_flags(prev.flags, flags) and is_mergeable_anon_vma(m, src_id, src, prev)
            and (prev.pgoff + (prev.end - prev.start) == pgoff or m.rules.merge == "none"))


def can_merge_before(m: MMState, nxt: VMA, flags: int, pgoff: int, npages: int, src_id,
                     src: VMA | None) -> bool:
    """can_vma_merge_before: the range may be prepended to next (at a linear
    offset, except in the kernels before anon_vma)."""
    return (same_flags(nxt.flags, flags) and is_mergeable_anon_vma(m, src_id, src, nxt)
            and (nxt.pgoff == pgoff + npages or m.rules.merge == "none"))


def prev_next_compatible(m: MMState, prev: VMA, nxt: VMA) -> bool:
    """can_vma_merge_right's extra test when merging both sides (vma_merge's
    is_mergeable_anon_vma(prev, next) before 2011; none before anon_vma)."""
    if m.rules.merge == "none":
        return True
    p, n = anon_id(m, prev), anon_id(m, nxt)
    return p is None or n is None or p is n


# -- split --------------------------------------------------------------------------

def split_vma(m: MMState, vma: VMA, at: int, new_below: bool) -> VMA:
    """__split_vma: cut vma at vpn at; the new VMA is the lower part if new_below.

    Allocation order as in the kernel: the VMA, then anon_vma_clone. On
    NoMem nothing changed. Returns the new VMA.
    """
    assert vma.start < at < vma.end, (vma, at)
    new = vm_area_dup(m, vma)
    try:
        m.rmap.vma_clone(new, vma)
    except BaseException:
        vm_area_free(m, new)
        raise
    m.surgery_point("split_vma:cloned", vma, new)
    k = at - vma.start
    old_pt = vma.pt
    if new_below:
        new.end = at
        new.pt = old_pt[:k].copy()
        vma.pt = old_pt[k:].copy()
        set_range(m, vma, at, vma.end, vma.pgoff + k)
    else:
        new.start = at
        new.pgoff = vma.pgoff + k
        new.pt = old_pt[k:].copy()
        vma.pt = old_pt[:k].copy()
        set_range(m, vma, vma.start, at, vma.pgoff)
    m.surgery_point("split_vma:adjusted", vma, new)
    vma.mm.link(new)
    return new


# -- removal of a VMA absorbed by a merge ----------------------------------------------

def unlink_merged(m: MMState, gone: VMA) -> None:
    """__vma_unlink of a VMA a merge removes; the anon_vma_chain patch (2010)
    also hid it from walks."""
    gone.mm.unlink(gone)
    if m.config.vm_lock_rmap:
        gone.flags |= VM_LOCK_RMAP  # never cleared: the VMA is freed after anon_vma_merge


def remove_merged(m: MMState, target: VMA, gone: VMA) -> None:
    """vma_complete's removal: gone's pages now belong to target."""
    unlink_merged(m, gone)
    importer_ready(target)
    m.surgery_point("remove_merged:unlinked", target, gone)
    if gone.lineage is not None or gone.avcs:
        m.rmap.vma_merge(target, gone)
    vm_area_free(m, gone)


# -- vma_merge_existing_range / vma_modify ------------------------------------------

def vma_modify_flags(m: MMState, prev: VMA | None, vma: VMA, start: int, end: int,
                     newflags: int) -> VMA:
    """vma_modify_flags: give [start, end) of vma newflags, merging or splitting.

    Returns the VMA that now covers exactly [start, end) (before its flags
    are set by the caller). Raises NoMem; a split already done stays done.
    """
    merged = vma_merge_existing_range(m, prev, vma, start, end, newflags)
    if merged is not None:
        return merged
    return split_range(m, vma, start, end)


def split_range(m: MMState, vma: VMA, start: int, end: int) -> VMA:
    """Split vma so that one VMA covers exactly [start, end) of it, and return
    that VMA (the split half of vma_modify; all that 2.6.9's mlock_fixup did).
    Raises NoMem; a split already done stays done."""
    if vma.start < start:
        split_vma(m, vma, start, True)
    if vma.end > end:
        split_vma(m, vma, end, False)
    return vma


def vma_merge_existing_range(m: MMState, prev: VMA | None, mid: VMA, start: int, end: int,
                             flags: int) -> VMA | None:
    """vma_merge_existing_range (mm/vma.c): merge [start, end) of mid with
    prev and/or next, given its new flags. None when no merge happens.
    """
    if flags & VM_SPECIAL:
        return None
    left_side = start == mid.start
    right_side = end == mid.end
    if not left_side and not right_side:
        return None
    mm = mid.mm
    prev, _ = mm.prev_next(mid.start, mid.start)  # vma_prev(middle)
    if prev is not None and prev.end != mid.start:
        prev = None
    _, nxt = mm.prev_next(mid.end, mid.end)
    if nxt is not None and nxt.start != mid.end:
        nxt = None
    pgoff = mid.pgoff + (start - mid.start)
    npages = end - start
    src_l = anon_id(m, mid)
    merge_left = (left_side and prev is not None
                  and can_merge_after(m, prev, flags, pgoff, src_l, mid))
    merge_right = (right_side and nxt is not None
                   and can_merge_before(m, nxt, flags, pgoff, npages, src_l, mid)
                   and (prev is None or not merge_left or prev_next_compatible(m, prev, nxt)))
    if not merge_left and not merge_right:
        return None
    remove_mid = left_side and right_side

    if merge_left and merge_right:
        # prev absorbs mid and next
        assert prev is not None and nxt is not None  # merge_left/right imply them
        src = nxt if nxt.lineage is not None else mid
        dup_anon_vma(m, prev, src)
        m.surgery_point("merge:cloned", prev, mid, nxt)
        prev.pt = np.concatenate((prev.pt, mid.pt, nxt.pt))
        set_range(m, prev, prev.start, nxt.end, prev.pgoff)
        remove_merged(m, prev, mid)
        remove_merged(m, prev, nxt)
        return prev
    if merge_left:
        # prev extends to end; mid shrinks or goes
        assert prev is not None  # merge_left implies it
        dup_anon_vma(m, prev, mid)
        m.surgery_point("merge:cloned", prev, mid)
        k = end - mid.start
        prev.pt = np.concatenate((prev.pt, mid.pt[:k]))
        if remove_mid:
            set_range(m, prev, prev.start, end, prev.pgoff)
            remove_merged(m, prev, mid)
        else:
            # vma_adjust's order: prev grows over [start, end), then mid
            # shrinks; a walk between the two finds those pages twice
            mid.pt = mid.pt[k:].copy()
            set_range(m, prev, prev.start, end, prev.pgoff)
            m.surgery_point("merge_left:prev_grown", prev, mid)
            set_range(m, mid, end, mid.end, mid.pgoff + k)
            m.surgery_point("merge_left:mid_shrunk", prev, mid)
            importer_ready(prev)
        return prev
    # merge_right: next extends down to start; mid shrinks or goes
    assert nxt is not None  # merge_right implies it
    dup_anon_vma(m, nxt, mid)
    m.surgery_point("merge:cloned", nxt, mid)
    k = start - mid.start
    nxt.pt = np.concatenate((mid.pt[k:], nxt.pt))
    if remove_mid:
        # next grows over mid before mid leaves (vma_adjust kept the
        # surviving VMA covering the range throughout)
        set_range(m, nxt, start, nxt.end, nxt.pgoff - npages)
        m.surgery_point("merge_right:next_grown", nxt, mid)
        remove_merged(m, nxt, mid)
    else:
        # vma_adjust's order: mid shrinks, then next grows down; a walk
        # between the two misses [start, end): the window the anon_vma_chain
        # patch (2010) closed with VM_LOCK_RMAP
        mid.pt = mid.pt[:k].copy()
        set_range(m, mid, mid.start, start, mid.pgoff)
        m.surgery_point("merge_right:mid_shrunk", nxt, mid)
        set_range(m, nxt, start, nxt.end, nxt.pgoff - npages)
        importer_ready(nxt)
    return nxt


# -- new ranges: mmap and copy_vma -------------------------------------------------------

def vma_merge_new_range(m: MMState, mm: MM, start: int, end: int, flags: int, pgoff: int,
                        copied_from: VMA | None = None, src_lineage=None) -> VMA | None:
    """vma_merge_new_range: place [start, end) into a neighbour if compatible.

    copied_from is the VMA mremap is moving (copy_vma), whose anon_vma the
    target must then carry (dup_anon_vma); src_lineage, without it, the
    range's anon_vma identity (anon_id). The new range's PTEs are empty;
    the caller fills them. Returns the target VMA or None.
    """
    if flags & VM_SPECIAL:
        return None
    prev, nxt = mm.prev_next(start, end)
    if prev is not None and prev.end != start:
        prev = None
    if nxt is not None and nxt.start != end:
        nxt = None
    if prev is None and nxt is None:
        return None
    src_l = anon_id(m, copied_from) if copied_from is not None else src_lineage
    npages = end - start
    # The VMA mremap copies is the source of the anon_vma question too: a
    # fork child's may not pass to an unfaulted neighbour (6.18's copied_from).
    left = prev is not None and can_merge_after(m, prev, flags, pgoff, src_l, copied_from)
    right = (nxt is not None
             and can_merge_before(m, nxt, flags, pgoff, npages, src_l, copied_from)
             and (prev is None or not left or prev_next_compatible(m, prev, nxt)))
    if not left and not right:
        return None
    if left:
        assert prev is not None  # left implies it
        target = prev
        linked_next = linked_src = False
        try:
            if right:
                assert nxt is not None  # right implies it
                linked_next = dup_anon_vma(m, target, nxt)
            if copied_from is not None:
                linked_src = dup_anon_vma(m, target, copied_from)
        except BaseException:
            if linked_next or linked_src:
                undo_dup_anon_vma(m, target)
            raise
        gap = np.zeros(npages, np.int64)
        if right:
            assert nxt is not None
            target.pt = np.concatenate((target.pt, gap, nxt.pt))
            set_range(m, target, target.start, nxt.end, target.pgoff)
            remove_merged(m, target, nxt)
        else:
            target.pt = np.concatenate((target.pt, gap))
            set_range(m, target, target.start, end, target.pgoff)
            importer_ready(target)
        return target
    assert nxt is not None  # right implies it
    target = nxt
    if copied_from is not None:
        dup_anon_vma(m, target, copied_from)
    target.pt = np.concatenate((np.zeros(npages, np.int64), target.pt))
    set_range(m, target, start, target.end, pgoff)
    importer_ready(target)
    return target


def anon_flags(prot_flags: int) -> int:
    """Flags of a new private anonymous mapping (do_mmap, accountable_mapping)."""
    flags = prot_flags | VM_MAYREAD | VM_MAYWRITE
    if prot_flags & VM_WRITE:
        flags |= VM_ACCOUNT
    return flags


def do_mmap(m: MMState, mm: MM, start: int, npages: int, prot_flags: int) -> VMA:
    """do_mmap with MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE.

    EEXIST when the range overlaps a VMA; ENOMEM when the VMA cannot be
    allocated. The new range merges into a neighbour when it can.
    """
    end = start + npages
    if mm.vmas_in(start, end):
        raise SysError("EEXIST")
    flags = anon_flags(prot_flags)
    vma = vma_merge_new_range(m, mm, start, end, flags, start)
    if vma is not None:
        return vma
    vma = vm_area_alloc(m, mm, start, end, start, flags)
    mm.link(vma)
    return vma


# -- munmap ----------------------------------------------------------------------------------

def do_vmi_munmap(m: MMState, mm: MM, start: int, end: int) -> None:
    """do_vmi_munmap: remove [start, end), splitting the VMAs at its edges.

    The start split, then the end split (each may raise NoMem; a done split
    stays), then zap, unlink from rmap, free (unmap_region, free_pgtables).
    """
    vmas = mm.vmas_in(start, end)
    if not vmas:
        return
    first = vmas[0]
    if first.start < start:
        split_vma(m, first, start, True)
    last = vmas[-1]
    if last.end > end:
        split_vma(m, last, end, False)
    unmap_region(m, mm, vmas)


def unmap_region(m: MMState, mm: MM, vmas: list[VMA]) -> None:
    """unmap_region / exit_mmap: zap the VMAs' pages, then unlink and free them."""
    for vma in vmas:
        zap_vma_range(m, vma, vma.start, vma.end)
    for vma in vmas:
        mm.unlink(vma)
        remove_vma(m, vma)


def remove_vma(m: MMState, vma: VMA) -> None:
    """free_pgtables' unlink_anon_vmas, then remove_vma (the VMA is unlinked)."""
    m.rmap.vma_unlink(vma)
    vma.lineage = None
    vm_area_free(m, vma)


def mlocked(vma: VMA) -> bool:
    return bool(vma.flags & VM_LOCKED)
