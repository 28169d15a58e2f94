# SPDX-License-Identifier: GPL-2.0-only
"""The names and records a user hands to the model or gets back from it.

Like the kernel's include/uapi: the values a trace (docs/trace-format.md)
may give for prot, madvise advice and rmap scheme, as Literal types with
the tuple of their values beside each (for a parser or a click.Choice), and
the stats record as TypedDicts. The types are plain str and dict at run
time, so JSON output does not change. Nothing here imports the rest of
rmaplab: the CLI, the trace parser and the mm core can all import it.
"""

from __future__ import annotations

from typing import Literal, TypedDict, TypeGuard, get_args

#: mmap/mprotect protection of version 1 of the trace format. Version 2 adds
#: "rx" (PROT_READ|PROT_EXEC, program text) with its file mappings.
Prot = Literal["rw", "r", "none"]
PROTS: tuple[Prot, ...] = get_args(Prot)

#: madvise advice: MADV_DONTNEED, MADV_FREE, MADV_PAGEOUT, MADV_COLD,
#: MADV_WILLNEED, and MADV_VOLATILE of Minchan Kim's volatile ranges RFC v3
#: (December 2012; model only, no kernel has it).
Advice = Literal["dontneed", "free", "pageout", "cold", "willneed", "volatile"]
ADVICES: tuple[Advice, ...] = get_args(Advice)

#: The rmap designs, newest first: ``modern`` (Linux 6.18) is the reference
#: the others are compared with; then Rik van Riel's anon_vma_chain
#: ("[PATCH -mm] change anon_vma linking to fix multi-process server
#: scalability issue", January 2010), Andrea Arcangeli's 2004 anon_vma it
#: replaced, Hugh Dickins' anonmm (object-based rmap for anonymous memory,
#: May 2004) and Rik van Riel's pte_chain reverse mapping (Linux 2.5, 2002).
#: docs/references.md lists each source.
SchemeName = Literal["modern", "anon_vma_chain", "anon_vma", "anonmm", "pte_chain"]
SCHEMES: tuple[SchemeName, ...] = get_args(SchemeName)

#: Variants buggy on purpose (docs/posted.md), taken only by name, never in
#: ``all``: ``anon_vma_chain_posted`` (the 2010 patch as posted, before its
#: review's fixes) and ``modern_degree`` (the single anon_vma->degree counter
#: of commit 7a3ef208e662, before commit 2555283eb40d).
VariantName = Literal["anon_vma_chain_posted", "modern_degree"]
VARIANTS: tuple[VariantName, ...] = get_args(VariantName)

#: swapoff's try_to_unuse: Hugh Dickins' 2004 version (slot by slot, mm by
#: mm over mmlist) or the 2019 one of commit b56a2d8af914 (one pass per mm).
Unuse = Literal["2004", "2019"]
UNUSES: tuple[Unuse, ...] = get_args(Unuse)


def is_prot(value: object) -> TypeGuard[Prot]:
    """Whether value is a prot of the trace format (version 1)."""
    return value in PROTS


def is_advice(value: object) -> TypeGuard[Advice]:
    """Whether value is a madvise advice of the trace format."""
    return value in ADVICES


def is_scheme(value: object) -> TypeGuard[SchemeName]:
    """Whether value names an rmap scheme."""
    return value in SCHEMES


def is_variant(value: object) -> TypeGuard[VariantName]:
    """Whether value names a scheme variant buggy on purpose."""
    return value in VARIANTS


def is_unuse(value: object) -> TypeGuard[Unuse]:
    """Whether value names a try_to_unuse version."""
    return value in UNUSES


class Walks(TypedDict):
    """What rmap walks examined, cumulatively: walks, anon_vmas locked, VMAs
    (chain entries, mms) examined, PTEs looked at, and what walks that never
    stop early would have examined (listed)."""

    count: int
    anon_vmas: int
    vmas: int
    ptes: int
    listed: int


class Objects(TypedDict):
    """Live kernel objects by kind, and pages in use."""

    vma: int
    anon_vma: int
    anon_vma_chain: int
    pte_chain: int
    anonmm: int
    page: int


class RmapBytes(TypedDict):
    """Bytes of rmap metadata, with the structure sizes of each architecture
    (docs/struct-sizes.md)."""

    x86_64: int
    i386: int


class Counters(TypedDict):
    """Event counters (vmstat-like); their meaning is in docs/trace-format.md.

    rmap_ops counts page_add_rmap/page_remove_rmap calls that edit a
    pte_chain (why fork was slow under Rik van Riel's 2002 pte_chain rmap);
    trylock the page_table_lock trylocks rmap walks take (pte_chain's
    try_to_unmap, anonmm's walks; trylock_fail, their failures, stays 0 in
    replay, one CPU with nothing concurrent: only the contention model's
    simulated CPUs fail one); early_cow the private copies anonmm
    forces (mremap, swap-in at another address); mmap_sem_write, vma_split
    and vma_merge what volatile ranges (Minchan Kim's RFC v3, December 2012)
    cost in exclusive mmap_sem and VMA surgery.

    rmap maintenance, cumulative: rmap_add_nodes and rmap_remove_nodes the
    pte_chain nodes (or direct pointers) page_add_rmap and page_remove_rmap
    examine, pte_chain_alloc and pte_chain_free the nodes they allocate and
    free (pte_chain only, 0 elsewhere); rmap_fork_objs the rmap objects the
    scheme's fork hooks touch (anon_vmas and avcs in anon_vma_fork, anonmms
    in dup_rmap), rmap_exit_objs those its unmap and exit hooks touch
    (unlink_anon_vmas, exit_rmap).
    """

    pgfault: int
    cow: int
    cow_reuse: int
    pgscan: int
    pgsteal: int
    pswpin: int
    pswpout: int
    pgvolatile: int
    trylock_fail: int
    oom_kill: int
    lazyfree_discard: int
    swapoff_mms: int
    swapoff_ptes: int
    rmap_ops: int
    trylock: int
    early_cow: int
    mmap_sem_write: int
    vma_split: int
    vma_merge: int
    rmap_add_nodes: int
    rmap_remove_nodes: int
    pte_chain_alloc: int
    pte_chain_free: int
    rmap_fork_objs: int
    rmap_exit_objs: int


class Stats(TypedDict):
    """The stats record of a trace's `stats` op (docs/trace-format.md)."""

    label: str
    scheme: str
    walks: Walks
    objects: Objects
    rmap_bytes: RmapBytes
    counters: Counters
