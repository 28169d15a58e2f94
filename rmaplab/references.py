# SPDX-License-Identifier: GPL-2.0-only
"""The published figures and sources the experiments answer, by anchor.

Each key is an anchor of docs/references.md (``docs/references.md#KEY``),
where the figure, its conditions and how rmaplab answers it are written
out; the value says where it was published, as a reader can find it: who,
what, when, and a message-id (lore.kernel.org/r/MESSAGE-ID), a commit or an
address. Claims (experiments/base.py) name their source by key; the docs
test checks that every key has its anchor on the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

#: The page every key is an anchor of.
PAGE = "docs/references.md"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a figure was published: who, what, when, and how to find it."""

    who: str
    title: str
    date: str
    where: str  # a message-id in <>, "commit HASH", or an address

    def __str__(self) -> str:
        return f'{self.who}, "{self.title}", {self.date}, {self.where}'


_RIK_2010 = Source("Rik van Riel", "[PATCH -mm] change anon_vma linking to fix multi-process "
                   "server scalability issue", "linux-mm, 28 Jan 2010",
                   "<20100128002000.2bf5e365@annuminas.surriel.com>")

SOURCES = MappingProxyType({
    "aim7-anon-vma-chain": _RIK_2010,
    "anon-vma-lock-contention": _RIK_2010,
    "kbuild-avc-overhead": _RIK_2010,
    "slab-sizes-6-18": Source("rmaplab", "/proc/slabinfo deltas per forked child",
                              "Linux 6.18.44 x86_64, Dec 2026",
                              "tests/test_slabinfo.py"),
    "pte-chain-singletons": Source("Martin J. Bligh", "2.5.65-mm2 vs 2.5.65-mm3 (full objrmap); "
                                   "Re: Performance of partial object-based rmap",
                                   "LKML, 22 Mar 2003; 20 Feb 2003",
                                   "<362150000.1048349169@[10.10.2.4]>; "
                                   "<278890000.1045791857@flay>"),
    "kernbench-partial-objrmap": Source("Martin J. Bligh", "Performance of partial object-based "
                                        "rmap", "LKML, 19 Feb 2003",
                                        "<7490000.1045715152@[10.10.2.4]>"),
    "kernbench-anonmm-anon-vma": Source("Martin J. Bligh", "Re: [PATCH] anobjrmap 1/6 objrmap",
                                        "LKML, 24 Mar 2004", "<24560000.1080143798@[10.10.2.4]>"),
    "fork-chain-growth": Source("Konstantin Khlebnikov", "mm: prevent endless growth of "
                                "anon_vma hierarchy", "2015 (report: Daniel Forrest, Aug 2012)",
                                "commit 7a3ef208e662; <502D42E5.7090403@redhat.com>"),
    "swapoff-quadratic": Source("Vineeth Remanan Pillai", "mm: rid swapoff of quadratic "
                                "complexity", "linux-mm, 3 Dec 2018",
                                "<20181203170934.16512-2-vpillai@digitalocean.com>; "
                                "commit b56a2d8af914"),
    "madv-free-ebizzy": Source("Minchan Kim", "[PATCH v3 01/17] mm: support madvise(MADV_FREE)",
                               "linux-mm, 12 Nov 2015",
                               "<1447302793-5376-2-git-send-email-minchan@kernel.org>"),
    "vrange-vma-flag": Source("Minchan Kim", "[PATCH v10 00/16] Volatile Ranges v10 (and its "
                              "thread)", "linux-mm, 2 Jan 2014",
                              "<1388646744-15608-1-git-send-email-minchan@kernel.org>"),
    "anonmm-mremap": Source("Hugh Dickins", "[PATCH] rmap 11 mremap moves", "LKML, 16 Apr 2004",
                            "<Pine.LNX.4.44.0404160033380.10431-100000@localhost.localdomain>"),
    "vm-lock-rmap-race": Source("Nick Piggin and Rik van Riel", "Re: [PATCH -mm] remove "
                                "VM_LOCK_RMAP code", "linux-mm, 1 Feb 2010",
                                "<20100201061532.GC9085@laptop>, "
                                "<4B66F977.5010708@redhat.com>"),
    "pte-chain-trylock": Source("Rik van Riel", "mm/rmap.c: pte-based reverse mapping",
                                "Linux 2.5.27, Jul 2002", "try_to_unmap_one's trylock"),
    "unixbench-execl": Source("sufeng-nmg", "execl: as the degree of parallelism increases, "
                              "osq_lock becomes a bottleneck", "28 Feb 2023",
                              "github.com/kdlucas/byte-unixbench/issues/88"),
})


def source(ref: str) -> Source:
    """The source of the figure at anchor `ref` (KeyError if there is none)."""
    return SOURCES[ref]


def cite(ref: str) -> str:
    """``docs/references.md#REF (who, "title", date, where)``: a citation a
    reader of printed output can follow."""
    return f"{PAGE}#{ref} ({source(ref)})"
