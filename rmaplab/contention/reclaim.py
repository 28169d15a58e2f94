# SPDX-License-Identifier: GPL-2.0-only
"""Reclaim that evicts, on K CPUs, with page table trylocks that fail.

What it models: the AIM7-like load of aim7.py (processes fork, fault and
exit, holding their page_table_lock while they do), under reclaim that
takes pages away. Every anonymous page a process faults in joins an LRU
(a FIFO of frames, oldest first). Direct reclaim after each slice of
faults, and ``kswapd`` background reclaimers, each take ``batch`` pages
from the LRU's old end (shrink_page_list over SWAP_CLUSTER_MAX pages) and
for each page run:

  page_referenced  a walk under the scheme's walk lock; a young PTE seen is
                   a reference: the page goes back to the LRU's young end
                   (its young bits are now clear);
  try_to_unmap     a walk that removes each PTE it gets the page table lock
                   for. A page left with no PTE is freed; a page some PTE
                   still maps goes back to the LRU's young end (SWAP_AGAIN:
                   the PTEs removed stay removed, the ones missed stay) and
                   costs another scan when it comes round.

How each scheme's kernel takes the page table lock in these walks:

  pte_chain  Rik van Riel, mm/rmap.c ("Simple, low overhead pte-based
             reverse mapping scheme", Linux 2.5.27, July 2002):
             try_to_unmap_one spin_trylocks mm->page_table_lock and returns
             SWAP_AGAIN on a miss; try_to_unmap skips that chain entry and
             goes on with the next. page_referenced takes no page table lock.
  anonmm     Hugh Dickins, "[PATCH] rmap 7 object-based rmap" (April 2004)
             and "[PATCH] rmap 10 add anonmm rmap" (16 Apr 2004): both
             page_referenced_one and try_to_unmap_one spin_trylock it. A miss
             in page_referenced_one adds to ``failed`` and returns 0: the
             reference is not seen and the mapcount is not counted down, so
             the walk goes on to the end of the list (``failed`` only keeps
             the end-of-list warning quiet). A miss in try_to_unmap_one
             leaves the PTE and the page mapped: SWAP_AGAIN.
  others     anon_vma (2.6.9), anon_vma_chain (2.6.34), modern (6.18)
             take the anon_vma lock, then each PTE's lock with spin_lock
             (page_check_address, page_vma_mapped_walk): they wait for it and
             never return SWAP_AGAIN for a lock.

Assumptions (docs/experiments/contention.md discusses them):
  - a removed PTE is dropped (zap_vma_range, as MADV_DONTNEED): it stands
    for the swap entry try_to_unmap would leave; a later touch faults a new
    page (nothing in this load touches a page twice), and no swap I/O is
    timed;
  - the LRU lock and the page lock are not modelled; nor is the active list
    (a referenced page goes to the young end of the one list);
  - a trylock is answered at its probe's instant, the PTEs it won are
    removed when the walk's step has run (as aim7.py's walks);
  - in plain replay (one CPU, nothing concurrent) no trylock fails; here, on
    one simulated CPU, none fails either (a job never holds a lock across a
    turn).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..consts import PAGE_SIZE, WINDOW_START
from ..mm_types import PTE_PRESENT, PTE_SHIFT, PTE_YOUNG, VMA
from ..pgtable import zap_vma_range
from ..rmap.core import RmapWalkControl, rmap_walk
from .aim7 import PARENT, Aim7, Aim7Params, Steps
from .costs import DEFAULT_COSTS, Costs
from .profiles import ANON
from .sim import PREEMPT, Acquire, Compute, Release, TryLocks

#: how long an idle kswapd sleeps before it looks at the LRU again (s)
KSWAPD_NAP = 100e-6

#: a walk's steps; it returns what it found (see Reclaimer.walk)
WalkSteps = Generator[Any, Any, bool]


@dataclass(slots=True, kw_only=True)
class ReclaimParams(Aim7Params):
    """Aim7Params, and: pages per reclaim batch, background reclaimers."""

    batch: int = 32
    kswapd: int = 1


@dataclass(slots=True)
class Found:
    """A mapping a walk met: the walk's charges so far, and where it is."""

    vmas: int
    ptes: int
    vma: VMA
    vpn: int


class Lru:
    """The LRU: (frame, ticket) pairs, oldest first. A ticket tells a page
    from a later page in the same (freed and reused) frame."""

    def __init__(self) -> None:
        self.queue: deque[tuple[int, int]] = deque()
        self.ticket: dict[int, int] = {}
        self.next = 0

    def add(self, frame: int) -> tuple[int, int]:
        """A new page joins at the young end."""
        self.next += 1
        self.ticket[frame] = self.next
        entry = (frame, self.next)
        self.queue.append(entry)
        return entry

    def putback(self, entry: tuple[int, int]) -> None:
        self.queue.append(entry)

    def pop(self, mapcount: np.ndarray) -> tuple[int, int] | None:
        """The oldest page still mapped (stale entries are dropped)."""
        q = self.queue
        while q:
            f, t = q.popleft()
            if self.ticket.get(f) == t:
                if mapcount[f] > 0:
                    return f, t
                del self.ticket[f]  # freed by its last process
        return None

    def __len__(self) -> int:
        return len(self.queue)


@dataclass(slots=True)
class ReclaimStats:
    """What reclaim did and what it cost."""

    scanned: int = 0  # pages taken off the LRU and looked at
    freed: int = 0  # pages reclaim took the last PTE of
    walks: int = 0  # page_referenced and try_to_unmap walks
    referenced: int = 0  # pages put back because a reference was seen
    swap_again: int = 0  # try_to_unmap walks that missed a trylock
    kept: int = 0  # try_to_unmap walks that left the page mapped otherwise
    rescans: int = 0  # scans of a page an earlier try_to_unmap left mapped
    trylock_fail: int = 0  # failed page_table_lock trylocks, both walks
    unseen: int = 0  # PTEs page_referenced skipped on a failed trylock
    unmapped: int = 0  # PTEs removed
    time: float = 0.0  # simulated seconds spent in reclaim, waits included
    again: set[tuple[int, int]] = field(default_factory=set)


class Reclaimer:
    """shrink_page_list over a shared Lru, in a contention run's Sim."""

    def __init__(self, load: Aim7, lru: Lru) -> None:
        self.load = load
        self.lru = lru
        self.st = ReclaimStats()
        tw = load.m.rmap.trylock_walks
        self.try_ref = "referenced" in tw
        self.try_unmap = "unmap" in tw
        # pte_chain's page_referenced reads the PTEs through its chain, no lock
        self.ptl_ref = load.prof.walk_lock != "page"

    def shrink(self, nr: int) -> Steps:
        """shrink_inactive_list: up to nr pages off the LRU's old end, each
        through shrink_page."""
        t0 = self.load.sim.now
        m = self.load.m
        for _ in range(nr):
            entry = self.lru.pop(m.frames.mapcount)
            if entry is None:
                break
            yield from self.shrink_page(entry)
        self.st.time += self.load.sim.now - t0

    def shrink_page(self, entry: tuple[int, int]) -> Steps:
        """shrink_page_list for one page: page_referenced, then try_to_unmap;
        freed, or back to the LRU's young end."""
        st, ft = self.st, self.load.m.frames
        frame = entry[0]
        st.scanned += 1
        if entry in st.again:
            st.rescans += 1
            st.again.discard(entry)
        ref = yield from self.walk(frame, unmap=False)
        if ref:
            st.referenced += 1
            self.lru.putback(entry)
            return
        if ft.mapcount[frame] <= 0:
            return  # gone meanwhile (COW, exit): not reclaim's
        missed = yield from self.walk(frame, unmap=True)
        if ft.mapcount[frame] <= 0:
            st.freed += 1
            self.lru.ticket.pop(frame, None)
            return
        if missed:
            st.swap_again += 1
        else:
            st.kept += 1
        st.again.add(entry)
        self.lru.putback(entry)

    def find(self, frame: int, unmap: bool) -> tuple[list[Found], int, int, int]:
        """The walk on the machine, with the kernel's mapcount countdown:
        the mappings met, and the VMAs, PTEs and list entries it charged."""
        m = self.load.m
        w = m.walks
        v0, p0, l0 = w.vmas, w.ptes, w.listed
        left = [int(m.frames.mapcount[frame])]
        found: list[Found] = []
        if left[0] <= 0:
            return found, 0, 0, 0

        def one(f: int, vma: VMA, vpn: int) -> bool:
            found.append(Found(w.vmas - v0, w.ptes - p0, vma, vpn))
            left[0] -= 1
            return left[0] > 0

        rmap_walk(m, frame, RmapWalkControl(one, kind="unmap" if unmap else "referenced"))
        return found, w.vmas - v0, w.ptes - p0, w.listed - l0

    def walk(self, frame: int, unmap: bool) -> WalkSteps:
        """One walk under the page's walk lock. page_referenced returns
        whether a reference was seen; try_to_unmap whether a trylock missed."""
        load, c, st = self.load, self.load.c, self.st
        lk = load.walk_lock(frame)
        if lk is None:
            return False
        yield Acquire(lk, not load.prof.anon_rwsem or lk.cls != ANON)
        mapped = int(load.m.frames.mapcount[frame])
        found, vmas, ptes, listed = self.find(frame, unmap)
        st.walks += 1
        hold = c.walk_hold(vmas, ptes)
        won = [True] * len(found)
        if (self.try_unmap if unmap else self.try_ref) and found:
            probes = tuple((c.walk_hold(x.vmas, x.ptes), load.ptl(x.vma.mm)) for x in found)
            won = yield TryLocks(probes, hold)
            fails = won.count(False)
            if fails:
                st.trylock_fail += fails
                load.m.counters["trylock_fail"] += fails
                rest = max(0, listed - vmas)  # not counted down: on to the list's end
                if rest:
                    yield Compute(rest * (c.vma + c.pte))
        elif found and (unmap or self.ptl_ref):
            done = 0.0  # spin_lock each PTE's lock on the way (page_check_address)
            for x in found:
                at = c.walk_hold(x.vmas, x.ptes)
                yield Compute(at - done)
                done = at
                ptl = load.ptl(x.vma.mm)
                yield Acquire(ptl)
                yield Compute(c.zap_pte if unmap else 0.0)
                yield Release(ptl)
            yield Compute(hold - done)
        else:
            yield Compute(hold)
        result = self.apply(frame, found, won, unmap, len(found) == mapped)
        if unmap and self.try_unmap:
            yield Compute(sum(won) * c.zap_pte)  # the PTEs it won, cleared
        yield Release(lk)
        return result

    def apply(self, frame: int, found: list[Found], won: list[bool], unmap: bool,
              every: bool) -> bool:
        """The walk's effect on the PTEs it got the lock of, if they still
        map frame (a fault or an exit may have changed them meanwhile);
        every: the walk met every mapping."""
        m, st = self.load.m, self.st
        seen = False
        for x, got in zip(found, won):
            if not got:
                st.unseen += not unmap
                continue
            vma, i = x.vma, x.vpn - x.vma.start
            if vma.mm.dead or not 0 <= i < len(vma.pt):
                continue
            pte = int(vma.pt[i])
            if not pte & PTE_PRESENT or pte >> PTE_SHIFT != frame:
                continue
            if unmap:
                zap_vma_range(m, vma, x.vpn, x.vpn + 1)
                st.unmapped += 1
            elif pte & PTE_YOUNG:
                vma.pt[i] = pte & ~PTE_YOUNG
                seen = True
        if not unmap:
            # anonmm migrates a page off an extinct mm only when its walk
            # counted every mapping down (no trylock missed)
            m.rmap.referenced_end(frame, every and all(won))
            return seen
        return not all(won)


class ReclaimLoad(Aim7):
    """aim7.py's load, with an LRU, evicting reclaim and kswapd."""

    def __init__(self, scheme: str, params: ReclaimParams,
                 costs: Costs = DEFAULT_COSTS) -> None:
        super().__init__(scheme, params, costs)
        self.rp = params
        self.lru = Lru()
        self.reclaimer = Reclaimer(self, self.lru)
        self.lru_add_range(PARENT, 0, params.pages, None)

    def lru_add_range(self, name: str, lo: int, hi: int, before: np.ndarray | None) -> None:
        """Pages of name's window [lo, hi) not mapped there before join the LRU."""
        mm = self.mm_of(name)
        vma = mm.vma_lookup(WINDOW_START // PAGE_SIZE + lo)
        if vma is None:
            return
        i0 = WINDOW_START // PAGE_SIZE + lo - vma.start
        seg = vma.pt[i0:i0 + (hi - lo)]
        new = (seg & PTE_PRESENT) != 0
        if before is not None:  # a new frame there (not a COW reused in place)
            new &= ((before & PTE_PRESENT) == 0) | ((seg >> PTE_SHIFT) != (before >> PTE_SHIFT))
        for f in (seg[new] >> PTE_SHIFT).tolist():
            if f:
                self.lru.add(int(f))

    def cow(self, child: str, s: int) -> Steps:
        lo = s * self.written // self.p.slices
        hi = (s + 1) * self.written // self.p.slices
        mm = self.mm_of(child)
        vma = mm.vma_lookup(WINDOW_START // PAGE_SIZE + lo)
        before = None
        if vma is not None and hi > lo:
            i0 = WINDOW_START // PAGE_SIZE + lo - vma.start
            before = vma.pt[i0:i0 + (hi - lo)].copy()
        steps = super().cow(child, s)
        first = next(steps, None)  # the faults ran on the machine
        if first is None:
            return
        if before is not None:
            self.lru_add_range(child, lo, hi, before)
        yield first
        yield from steps

    def reclaim(self) -> Steps:
        yield from self.reclaimer.shrink(self.rp.batch)

    def kswapd(self) -> Steps:
        """A background reclaimer: a batch per turn, a nap when it found none."""
        st = self.reclaimer.st
        while True:
            yield PREEMPT
            before = st.scanned
            yield from self.reclaimer.shrink(self.rp.batch)
            if st.scanned == before:
                yield Compute(KSWAPD_NAP)

    def start(self) -> None:
        for k in range(self.rp.kswapd):
            self.sim.spawn(self.kswapd(), name=f"kswapd{k}")
        super().start()

    def results(self, end: float) -> dict[str, float]:
        out = super().results(end)
        st = self.reclaimer.st
        per = max(st.freed, 1)
        out.update({
            "scanned": st.scanned, "freed": st.freed, "reclaim_walks": st.walks,
            "scanned_per_freed": st.scanned / per, "walks_per_freed": st.walks / per,
            "swap_again": st.swap_again, "kept_mapped": st.kept, "rescans": st.rescans,
            "trylock_fail": st.trylock_fail, "refs_unseen": st.unseen,
            "referenced": st.referenced, "reclaim_ms": 1e3 * st.time,
            "reclaim_us_per_freed": 1e6 * st.time / per,
        })
        return out


def run_reclaim(scheme: str, params: ReclaimParams | None = None, *,
                costs: Costs = DEFAULT_COSTS) -> dict[str, float]:
    """Run the AIM7-like load under evicting reclaim; return its flat metrics."""
    return ReclaimLoad(scheme, params or ReclaimParams(), costs).run()
