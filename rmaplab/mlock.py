# SPDX-License-Identifier: GPL-2.0-only
"""mlock and munlock (mm/mlock.c, Linux 6.18).

apply_vma_lock_flags sets or clears VM_LOCKED VMA by VMA (merging or
splitting like mprotect) and stops with ENOMEM at a hole, leaving the VMAs
before it changed and unpopulated. A successful mlock then populates the
range (__mm_populate): writable VMAs by write faults, so COW sharing is
broken in the locking task; read-only ones get the zero page; a PROT_NONE
VMA cannot be populated, so mlock returns ENOMEM with VM_LOCKED set.

A VM_SPECIAL VMA (here only a volatile one: Minchan Kim's volatile ranges
RFC v3 adds VM_VOLATILE to VM_SPECIAL, "non-mergable, non-mlock()able")
is left as it is by mlock_fixup, not locked and not split, and mlock still
succeeds; populate faults it in all the same (__mm_populate skips only
VM_IO and VM_PFNMAP), so its first fault on an empty entry clears
VM_VOLATILE as any fault does (volatile.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import SysError
from .memory import handle_mm_fault_range, populate_range
from .mm_types import MM, VM_LOCKED, VM_READ, VM_VOLATILE, VM_WRITE, VMA
from .mmap import VM_SPECIAL, split_range, vma_modify_flags
from .mprotect import apply_range

if TYPE_CHECKING:
    from .mm_state import MMState


def mlock_fixup(m: MMState, prev: VMA | None, vma: VMA, start: int, end: int,
                newflags: int) -> VMA:
    """mlock_fixup: give [start, end) of vma newflags, merging with its
    neighbours where they allow, or (kernels before mlock merged, the era's
    rules.mlock_merges false) only splitting. A VM_SPECIAL VMA is neither
    locked nor counted."""
    if newflags == vma.flags or vma.flags & VM_SPECIAL:
        return vma
    if m.rules.mlock_merges:
        vma = vma_modify_flags(m, prev, vma, start, end, newflags)
    else:
        vma = split_range(m, vma, start, end)
    vma.flags = newflags
    return vma


def do_mlock(m: MMState, mm: MM, start: int, end: int, lock: bool) -> None:
    """do_mlock / sys_munlock."""

    def fixup(prev: VMA | None, vma: VMA, lo: int, hi: int) -> VMA:
        flags = vma.flags | VM_LOCKED if lock else vma.flags & ~VM_LOCKED
        return mlock_fixup(m, prev, vma, lo, hi, flags)

    apply_range(m, mm, start, end, fixup)
    if lock:
        mm_populate(m, mm, start, end)


def mm_populate(m: MMState, mm: MM, start: int, end: int, ignore_errors: bool = False) -> None:
    """__mm_populate: fault in every page of the locked VMAs in the range.
    mlock reports a VMA that cannot be populated (PROT_NONE) as ENOMEM;
    mm_populate (mremap's grow of a locked VMA) ignores it."""
    vpn = start
    failed = False
    while vpn < end:
        vma = mm.find_vma(vpn)
        if vma is None or vma.start >= end:
            break
        lo = max(vpn, vma.start)
        hi = min(end, vma.end)
        if vma.flags & VM_VOLATILE and vma.flags & (VM_READ | VM_WRITE):
            # through the fault path, whose VM_VOLATILE branch may merge the VMA away
            handle_mm_fault_range(m, mm, lo, hi, bool(vma.flags & VM_WRITE), None, None)
        elif vma.flags & (VM_READ | VM_WRITE):
            populate_range(m, vma, lo, hi)
        elif not ignore_errors:
            failed = True  # GUP's EFAULT on PROT_NONE, reported as ENOMEM
            break
        vpn = hi
    if failed:
        raise SysError("ENOMEM")
