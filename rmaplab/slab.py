# SPDX-License-Identifier: GPL-2.0-only
"""Kernel object allocation: live counts per kind, and failure injection.

Models kmem_cache_alloc/free for the objects rmap cares about (vma,
anon_vma, anon_vma_chain, pte_chain, anonmm, mm). Every allocation the kernel
can fail on these paths goes through Slab.alloc(), so a test can make the
Nth call fail (fail_at) and check that the syscall unwinds without a leak.

Cost: O(1) per call.
"""

from __future__ import annotations

from .errors import NoMem

KINDS = ("vma", "anon_vma", "anon_vma_chain", "pte_chain", "anonmm", "mm")


class Slab:
    __slots__ = ("live", "calls", "fail_at", "fail_kinds", "total")

    def __init__(self) -> None:
        self.live: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.total: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.calls = 0  # allocations attempted so far (failable sites only)
        self.fail_at: int | None = None  # fail the call whose number is this
        self.fail_kinds: frozenset[str] | None = None  # None: any kind counts

    def alloc(self, kind: str, n: int = 1) -> None:
        """Account n objects of kind; raise NoMem at the injected call."""
        if self.fail_kinds is None or kind in self.fail_kinds:
            self.calls += 1
            if self.fail_at is not None and self.calls == self.fail_at:
                raise NoMem(kind)
        self.live[kind] += n
        self.total[kind] += n

    def free(self, kind: str, n: int = 1) -> None:
        self.live[kind] -= n
        if self.live[kind] < 0:
            raise AssertionError(f"slab {kind}: freed more than allocated")
