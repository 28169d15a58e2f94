# SPDX-License-Identifier: GPL-2.0-only
"""mprotect (mm/mprotect.c, Linux 6.18): do_mprotect_pkey and mprotect_fixup.

Each VMA of the range gets its new flags through vma_modify_flags (merge
with a neighbour, or split). A hole stops the walk with ENOMEM after the
VMAs before it were changed, as the kernel does; a range that starts in a
hole changes nothing. VM_ACCOUNT follows mprotect_fixup: gained when a
private VMA becomes writable, dropped when it stops being writable while
the VMA (before any split) has no anon_vma. Removing write permission
write-protects the PTEs (change_protection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import SysError
from .memory import populate_range
from .mm_types import (
    MM,
    PTE_PRESENT,
    PTE_WRITE,
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_LOCKED,
    VM_WRITE,
    VMA,
)
from .mmap import vma_modify_flags

if TYPE_CHECKING:
    from .mm_state import MMState


def apply_range(m: MMState, mm: MM, start: int, end: int, fixup) -> None:
    """The VMA walk shared by mprotect and mlock: fixup(prev, vma, lo, hi)
    for each VMA piece of [start, end); ENOMEM at the first hole."""
    vma = mm.vma_lookup(start)
    if vma is None:
        raise SysError("ENOMEM")
    prev, _ = mm.prev_next(vma.start, vma.start)
    if start > vma.start:
        prev = vma
    tmp = start
    while tmp < end:
        vma = mm.vma_lookup(tmp)
        if vma is None:
            raise SysError("ENOMEM")
        hi = min(vma.end, end)
        prev = fixup(prev, vma, tmp, hi)
        tmp = hi


def do_mprotect(m: MMState, mm: MM, start: int, end: int, prot_flags: int) -> None:
    """do_mprotect_pkey for private anonymous memory."""

    def fixup(prev: VMA | None, vma: VMA, lo: int, hi: int) -> VMA:
        return mprotect_fixup(m, prev, vma, lo, hi,
                              (vma.flags & ~VM_ACCESS_FLAGS) | prot_flags)

    apply_range(m, mm, start, end, fixup)


def mprotect_fixup(m: MMState, prev: VMA | None, vma: VMA, start: int, end: int,
                   newflags: int) -> VMA:
    """mprotect_fixup: returns the VMA now covering [start, end) (the new prev)."""
    oldflags = vma.flags
    if newflags == oldflags:
        return vma
    if newflags & VM_WRITE:
        if not oldflags & (VM_ACCOUNT | VM_WRITE):
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.lineage is None:
        newflags &= ~VM_ACCOUNT
    if newflags == oldflags:
        return vma
    vma = vma_modify_flags(m, prev, vma, start, end, newflags)
    vma.flags = newflags
    if not newflags & VM_WRITE:
        change_protection(vma, start, end)
    elif oldflags & (VM_WRITE | VM_LOCKED) == VM_LOCKED:
        # a locked private VMA turning writable breaks COW now, so that later
        # writes do not fault (populate_vma_page_range in mprotect_fixup)
        populate_range(m, vma, start, end)
    return vma


def change_protection(vma: VMA, start: int, end: int) -> None:
    """Write-protect the present PTEs of [start, end) (no PTE is made writable:
    the next write goes through do_wp_page, which reuses exclusive pages)."""
    seg = vma.pt[start - vma.start:end - vma.start]
    present = (seg & PTE_PRESENT) != 0
    if present.any():
        seg[present] &= ~np.int64(PTE_WRITE)
