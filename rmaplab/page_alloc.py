# SPDX-License-Identifier: GPL-2.0-only
"""Physical frames and their struct page state, kept as parallel arrays.

Models mm/page_alloc.c (the free pool) and the struct page/folio fields rmap
uses: mapcount, refcount, flags, mapping (the anon_vma, anonmm, ... that
page->mapping points at), index (the linear page index, or the address for
anonmm), the swap slot (page->private) and the first byte of the page's
data. Arrays grow by doubling up to the machine's frame limit, so a small
machine costs little and ten million pages cost about 45 bytes each.

Frame 0 is the shared zero page: never allocated, never freed, no mapcount.

Cost: alloc/free of k frames is O(k) in numpy, not k Python steps.
"""

from __future__ import annotations

import numpy as np

# page flags (a subset of the kernel's, by meaning)
PG_ANON = 0x1
PG_ANON_EXCLUSIVE = 0x2
PG_SWAPCACHE = 0x4
PG_DIRTY = 0x8
PG_REFERENCED = 0x10
PG_ACTIVE = 0x20
PG_LRU = 0x40
PG_MLOCKED = 0x80
PG_LAZYFREE = 0x100  # MADV_FREE'd: clean anon, may be discarded
PG_WRITEBACK = 0x200


class FrameTable:
    """All struct pages of the machine. ``limit`` is the number of usable frames."""

    __slots__ = ("limit", "cap", "mapcount", "refcount", "flags", "mapping", "index",
                 "lineage", "private", "data", "lru_seq", "free_stack", "nfree_stack",
                 "next_unused", "used")

    def __init__(self, limit: int, initial: int = 1024) -> None:
        self.limit = limit
        self.cap = 0
        self.mapcount = np.zeros(0, np.int32)
        self.refcount = np.zeros(0, np.int32)
        self.flags = np.zeros(0, np.uint32)
        self.mapping = np.empty(0, dtype=object)
        self.index = np.zeros(0, np.int64)
        # the lineage (mm_types.VMA.lineage) of the anon_vma page->mapping would
        # name, whatever the scheme: the volatile ranges RFC's walk (volatile.py)
        self.lineage = np.empty(0, dtype=object)
        self.private = np.full(0, -1, np.int64)
        self.data = np.zeros(0, np.uint8)
        self.lru_seq = np.zeros(0, np.int64)  # LRU age: lower is older
        self.free_stack = np.zeros(0, np.int64)
        self.nfree_stack = 0
        self.next_unused = 1  # frame 0 is the zero page
        self.used = 0
        self._grow(min(initial, limit + 1))

    def _grow(self, cap: int) -> None:
        old = self.cap
        if cap <= old:
            return

        def grow(a: np.ndarray, fill) -> np.ndarray:
            b = np.empty(cap, dtype=a.dtype)
            b[:old] = a
            b[old:] = fill
            return b

        self.mapcount = grow(self.mapcount, 0)
        self.refcount = grow(self.refcount, 0)
        self.flags = grow(self.flags, 0)
        self.mapping = grow(self.mapping, None)
        self.index = grow(self.index, 0)
        self.lineage = grow(self.lineage, None)
        self.private = grow(self.private, -1)
        self.data = grow(self.data, 0)
        self.lru_seq = grow(self.lru_seq, 0)
        self.cap = cap

    @property
    def nr_free(self) -> int:
        return self.limit - self.used

    def alloc(self, k: int) -> np.ndarray:
        """Take k free frames (caller checked nr_free). Cost: O(k)."""
        if k > self.nr_free:
            raise AssertionError("alloc beyond the free pool")
        out = np.empty(k, np.int64)
        take = min(k, self.nfree_stack)
        if take:
            out[:take] = self.free_stack[self.nfree_stack - take:self.nfree_stack]
            self.nfree_stack -= take
        rest = k - take
        if rest:
            first = self.next_unused
            need = first + rest
            if need > self.cap:
                self._grow(min(max(need, self.cap * 2), self.limit + 1))
            out[take:] = np.arange(first, need, dtype=np.int64)
            self.next_unused = need
        self.used += k
        return out

    def alloc_one(self) -> int:
        return int(self.alloc(1)[0])

    def free(self, frames: np.ndarray) -> None:
        """Return frames to the pool and clear their struct page state."""
        k = len(frames)
        if not k:
            return
        self.mapcount[frames] = 0
        self.refcount[frames] = 0
        self.flags[frames] = 0
        self.mapping[frames] = None
        self.index[frames] = 0
        self.lineage[frames] = None
        self.private[frames] = -1
        self.data[frames] = 0
        n = self.nfree_stack
        if n + k > len(self.free_stack):
            fs = np.empty(max(2 * len(self.free_stack), n + k, 64), np.int64)
            fs[:n] = self.free_stack[:n]
            self.free_stack = fs
        self.free_stack[n:n + k] = frames
        self.nfree_stack = n + k
        self.used -= k

    def allocated(self) -> np.ndarray:
        """Frame numbers in use (for the checker and snapshots). Cost: O(frames)."""
        live = np.ones(self.next_unused, bool)
        live[0] = False
        live[self.free_stack[:self.nfree_stack]] = False
        return np.nonzero(live)[0]
