# SPDX-License-Identifier: GPL-2.0-only
"""The mm structures: mm_struct, vm_area_struct and the task that owns them.

Models include/linux/mm_types.h (Linux 6.18) for private anonymous memory.
Addresses are kept as page numbers (vpn = address >> PAGE_SHIFT).

Page tables are stored per VMA: ``vma.pt`` is a numpy int64 array with one
entry per page of the VMA. Private anonymous memory has no page-table entry
outside a VMA (munmap zaps before it unlinks), so this is the mm's page table
cut at VMA boundaries; split, merge and mremap slice, join or hand over
these arrays instead of touching entries one by one.

PTE encoding (one int64):
  bit 0 present, bit 1 writable, bit 2 young (accessed), bit 3 dirty,
  bit 4 swap entry (not present), bit 5 the swap entry's exclusive bit,
  bits 8.. the frame number, or the swap slot.
  0 is pte_none. Frame 0 is the shared zero page.

Locks (modelled as names in the contention model; a single thread here):
  mm.mmap_lock guards the VMA list and every vma field; anon_vma->rwsem
  (the root's, in ``modern``) guards the anon_vma's interval tree / list.
"""

from __future__ import annotations

import numpy as np
from sortedcontainers import SortedKeyList

from .uapi import Prot

# vm_flags bits the model uses (values are the kernel's where it has them).
VM_READ = 0x1
VM_WRITE = 0x2
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_LOCKED = 0x2000
VM_ACCOUNT = 0x100000
VM_VOLATILE = 0x1_0000_0000  # volatile ranges RFC v3 (2012); counts as VM_SPECIAL there
VM_LOCK_RMAP = 0x1000000  # the anon_vma_chain patch's flag (2010), kept as an option

VM_ACCESS_FLAGS = VM_READ | VM_WRITE

PTE_PRESENT = 0x1
PTE_WRITE = 0x2
PTE_YOUNG = 0x4
PTE_DIRTY = 0x8
PTE_SWAP = 0x10
PTE_SWP_EXCLUSIVE = 0x20  # swap PTE of a page that was exclusive (pte_swp_exclusive)
PTE_SHIFT = 8

ZERO_PFN = 0


def prot_to_flags(prot: Prot) -> int:
    """vm_flags for a trace's prot (calc_vm_prot_bits)."""
    return {"rw": VM_READ | VM_WRITE, "r": VM_READ, "none": 0}[prot]


def flags_to_prot(flags: int) -> Prot:
    """The trace's prot for vm_flags (what a snapshot reports)."""
    if flags & VM_WRITE:
        return "rw"
    return "r" if flags & VM_READ else "none"


class VMA:
    """vm_area_struct: one range [start, end) of pages with one set of flags.

    ``anon_vma`` and ``avcs`` belong to the rmap scheme (what they hold
    depends on it); ``lineage`` and ``forked`` are the scheme-independent facts
    the VMA layer asks when it decides merges (see mmap.py).
    """

    __slots__ = ("mm", "start", "end", "pgoff", "flags", "pt", "anon_vma", "avcs",
                 "lineage", "forked", "rmap", "serial", "linked", "dead")

    def __init__(self, mm: MM, start: int, end: int, pgoff: int, flags: int) -> None:
        self.mm = mm
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.flags = flags
        self.pt = np.zeros(end - start, dtype=np.int64)
        self.anon_vma = None  # the scheme's anon_vma (or None)
        self.avcs: list = []  # the scheme's anon_vma_chain list (same_vma)
        self.lineage: object | None = None  # merge identity: what anon_vma modern would hold
        self.forked = False  # lineage came from a parent (avc list not singular)
        self.rmap = None  # scheme-private per-VMA data
        self.serial = 0
        self.linked = 0  # when it got its anon_vma links: its place on their lists
        self.dead = False

    @property
    def npages(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        return (f"<vma {self.start << 12:#x}-{self.end << 12:#x} "
                f"{flags_to_prot(self.flags)}{' L' if self.flags & VM_LOCKED else ''} "
                f"pgoff={self.pgoff:#x}>")


class MM:
    """mm_struct: the VMAs of one address space, its counters, its lists."""

    __slots__ = ("id", "vmas", "mm_users", "mm_count", "rss", "swapents", "anonmm",
                 "on_mmlist", "owner", "rmap", "dead")

    def __init__(self, mm_id: int) -> None:
        self.id = mm_id
        self.vmas: SortedKeyList = SortedKeyList(key=_vma_start)
        self.mm_users = 1
        self.mm_count = 1
        self.rss = 0  # MM_ANONPAGES: present anonymous pages (not the zero page)
        self.swapents = 0  # MM_SWAPENTS
        self.anonmm = None  # anonmm scheme's struct anonmm
        self.on_mmlist = False
        self.owner: Task | None = None
        self.rmap = None
        self.dead = False

    # -- VMA tree (the maple tree in 6.18), keyed by start ---------------------

    def find_vma(self, vpn: int) -> VMA | None:
        """find_vma: the first VMA whose end is above vpn. Cost: O(log n)."""
        vmas = self.vmas
        i = vmas.bisect_key_right(vpn)
        if i:
            v = vmas[i - 1]
            if v.end > vpn:
                return v
        return vmas[i] if i < len(vmas) else None

    def vma_lookup(self, vpn: int) -> VMA | None:
        """vma_lookup: the VMA containing vpn, or None."""
        v = self.find_vma(vpn)
        return v if v is not None and v.start <= vpn else None

    def vmas_in(self, start: int, end: int) -> list[VMA]:
        """VMAs overlapping [start, end), in address order."""
        vmas = self.vmas
        i = vmas.bisect_key_right(start)
        if i and vmas[i - 1].end > start:
            i -= 1
        out = []
        n = len(vmas)
        while i < n:
            v = vmas[i]
            if v.start >= end:
                break
            out.append(v)
            i += 1
        return out

    def prev_next(self, start: int, end: int) -> tuple[VMA | None, VMA | None]:
        """The VMAs just below start and at/after end (neighbours of a gap)."""
        vmas = self.vmas
        i = vmas.bisect_key_left(start)
        prev = vmas[i - 1] if i else None
        j = vmas.bisect_key_left(end)
        nxt = vmas[j] if j < len(vmas) else None
        return prev, nxt

    def link(self, vma: VMA) -> None:
        self.vmas.add(vma)

    def unlink(self, vma: VMA) -> None:
        self.vmas.remove(vma)


def _vma_start(v: VMA) -> int:
    return v.start


class Task:
    """A process: a name and an mm (None after exit). Flags for use_mm."""

    __slots__ = ("name", "mm", "pid", "alive", "killed", "flags", "parent")

    PF_KTHREAD = 0x00200000
    PF_BORROWED_MM = 0x02000000  # a kthread doing use_mm (Hugh Dickins, 2004)

    def __init__(self, name: str, mm: MM | None, pid: int, parent: Task | None = None) -> None:
        self.name = name
        self.mm = mm
        self.pid = pid
        self.alive = True
        self.killed = False
        self.flags = 0
        self.parent = parent
