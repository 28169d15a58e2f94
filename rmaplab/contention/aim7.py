# SPDX-License-Identifier: GPL-2.0-only
"""An AIM7-like forking load on K CPUs, with the locks its kernel takes.

What it models: the server of Rik van Riel's anon_vma_chain posting
(docs/references.md#aim7-anon-vma-chain). A parent maps ``pages`` pages and
writes them (untimed setup). Then ``procs`` job slots run at once: a job is
the parent forking a child, the child writing (copy-on-write) its ``cow``
share of the pages in ``slices`` time slices, and the child exiting; a
slot then starts its next job. Memory is under pressure: after each slice
of faults the child does direct reclaim of ``reclaim`` pages, each a
page_referenced walk followed, with probability ``unmap``, by a
try_to_unmap walk of the same page (shrink_page_list's order).

Every operation runs for real on a Machine of the scheme, at the simulated
instant it happens (a walk when it got its lock, a fork when its job starts
it), and holds its locks for the work the model counted (costs.py): so a
walk of a family anon_vma with 1000 children holds the lock for 1000 VMAs'
worth, because the model's walk examined 1000 VMAs then.

Assumptions (the page docs/experiments/contention.md discusses them):
  - round-robin scheduling over the live jobs, one slice per turn, no
    preemption inside a slice; a job never holds a lock across a turn;
  - the pages reclaim looks at are drawn uniformly (seeded) from the mapped
    anonymous frames, standing for an LRU scan that goes round memory;
  - reclaim does not evict: a try_to_unmap walk that would succeed leaves
    the page mapped (no swap device here), so the workload's memory stays
    what AIM7's would be; the walk, its lock holds and its trylocks are real;
  - a slice's faults take the child's page table lock once, for all its PTE
    updates: a trylock at a random instant fails with the lock's duty cycle,
    which batching does not change;
  - the first job of each slot starts part-way (a seeded number of slices
    already done), so exits and forks do not come in waves; throughput is
    counted after the first ``procs`` jobs completed (warm-up).
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..consts import PAGE_SIZE, WINDOW_START
from ..machine import Config, Machine
from ..mm_types import MM, PTE_PRESENT, PTE_SHIFT, PTE_YOUNG, VMA
from ..rmap.core import RmapWalkControl, rmap_walk
from .costs import DEFAULT_COSTS, Costs
from .profiles import ANON, CHAIN, MMLIST, PTL, LockProfile, lock_object, profile
from .sim import PREEMPT, Acquire, Compute, Lock, Release, Sim, TryLocks

PARENT = "aim7"

Steps = Generator[Any, Any, None]


@dataclass(slots=True, kw_only=True)
class Aim7Params:
    """The workload's knobs (the experiment's parameters)."""

    cpus: int = 4
    procs: int = 100
    pages: int = 1000
    cow: float = 1.0
    slices: int = 10
    reclaim: int = 1
    unmap: float = 0.5
    rounds: int = 2
    seed: int = 1


@dataclass(slots=True)
class WalkRecord:
    """What one walk examined, and where on its way it met each mapping."""

    vmas: int
    ptes: int
    listed: int
    found: list[tuple[int, int, MM]] = field(default_factory=list)  # (vmas, ptes) so far, mm


class Aim7:
    """One run: a Machine, a Sim, the job slots and the counters."""

    def __init__(self, scheme: str, params: Aim7Params, costs: Costs = DEFAULT_COSTS) -> None:
        self.p = params
        self.c = costs
        self.prof: LockProfile = profile(scheme)
        self.m = Machine(Config(scheme=scheme))
        self.sim = Sim(params.cpus)
        self.rng = random.Random(params.seed)
        self.serial = 0
        self.done_times: list[float] = []
        self.target = params.procs * max(1, params.rounds)
        self.keep: dict[int, object] = {}  # anon objects locked: their ids stay unique
        self.walks = 0
        self.walk_hold = 0.0
        self.walk_vmas = 0
        self.unmap_walks = 0
        self.swap_again = 0
        self.trylock_fail = 0
        written = round(params.pages * params.cow) if params.cow > 0 else 0
        self.written = max(0, min(params.pages, written))
        m = self.m
        m.spawn(PARENT)
        m.mmap(PARENT, WINDOW_START, params.pages, "rw")
        m.write(PARENT, WINDOW_START, params.pages, 1)
        self.parent_mm = self.mm_of(PARENT)

    def mm_of(self, name: str) -> MM:
        mm = self.m.task(name).mm
        assert mm is not None, name
        return mm

    # -- locks -------------------------------------------------------------------------
    def anon_lock(self, obj: object) -> Lock:
        obj = lock_object(obj)
        self.keep[id(obj)] = obj
        return self.sim.lock(("anon", id(obj)), ANON, rw=self.prof.anon_rwsem,
                             sleeps=self.prof.anon_rwsem)

    def ptl(self, mm: MM) -> Lock:
        return self.sim.lock(("ptl", mm.id), PTL)

    def mmlist(self) -> Lock:
        return self.sim.lock("mmlist_lock", MMLIST)

    def section(self, lk: Lock, t: float, write: bool = True) -> Steps:
        """Take lk, work t seconds, let it go."""
        yield Acquire(lk, write)
        yield Compute(t)
        yield Release(lk)

    def link_sections(self, vma: VMA) -> Steps:
        """anon_vma_fork / unlink_anon_vmas / anon_vma_link / anon_vma_unlink:
        the anon locks a VMA's (un)linking takes, one section each."""
        links = self.prof.links
        if links == "vma" and vma.anon_vma is not None:
            yield from self.section(self.anon_lock(vma.anon_vma), self.c.link)
        elif links == "avcs":
            groups: list[list[object]] = []
            for avc in vma.avcs:
                lk = lock_object(avc.anon_vma)
                # 6.18 takes the root once for a run of entries under it
                if self.prof.anon_rwsem and groups and groups[-1][0] is lk:
                    groups[-1].append(lk)
                else:
                    groups.append([lk])
            for g in groups:
                yield from self.section(self.anon_lock(g[0]), len(g) * self.c.link)

    # -- the job -------------------------------------------------------------------------
    def job(self, first_slice: int) -> Steps:
        """One child's life: fork, slices of COW faults and reclaim, exit."""
        self.serial += 1
        child = f"c{self.serial}"
        yield from self.fork(child)
        for s in range(first_slice, self.p.slices):
            yield PREEMPT
            yield from self.cow(child, s)
            for _ in range(self.p.reclaim):
                yield from self.reclaim()
        yield PREEMPT
        yield from self.exit(child)

    def start(self) -> None:
        for _ in range(self.p.procs):
            self.spawn(self.rng.randrange(self.p.slices) if self.p.slices > 1 else 0)

    def spawn(self, first_slice: int = 0) -> None:
        self.sim.spawn(self.job(first_slice), on_done=self.job_done)

    def job_done(self, job) -> None:
        self.done_times.append(self.sim.now)
        if len(self.done_times) >= self.target:
            self.sim.stop()
        else:
            self.spawn()

    # -- fork, faults, exit -------------------------------------------------------------
    def fork(self, child: str) -> Steps:
        """dup_mmap: mmlist, dup_rmap, then per VMA anon_vma_fork and copy_page_range."""
        m, c, prof = self.m, self.c, self.prof
        m.fork(PARENT, child)
        mm = self.mm_of(child)
        yield Compute(c.fork)
        if prof.mmlist_always:
            yield from self.section(self.mmlist(), c.list_op)
        if prof.links == "mm" and mm.anonmm is not None:
            yield from self.section(self.anon_lock(mm.anonmm), c.link)
        for vma in list(mm.vmas):
            yield from self.link_sections(vma)
            n = int(np.count_nonzero(vma.pt))
            hold = n * (c.copy_pte + (c.chain if prof.chains else 0.0))
            yield Acquire(self.ptl(mm))
            yield Acquire(self.ptl(self.parent_mm))
            yield Compute(hold)
            yield Release(self.ptl(self.parent_mm))
            yield Release(self.ptl(mm))

    def cow(self, child: str, s: int) -> Steps:
        """A slice of write faults: the copy outside locks, the PTEs under the
        page table lock (and, for pte_chain, the old page's chain search)."""
        m, c = self.m, self.c
        lo = s * self.written // self.p.slices
        hi = (s + 1) * self.written // self.p.slices
        if hi <= lo:
            return
        mm = self.mm_of(child)
        vma = mm.vma_lookup(WINDOW_START // PAGE_SIZE + lo)
        chain_steps = 0
        if self.prof.chains and vma is not None:
            i0 = WINDOW_START // PAGE_SIZE + lo - vma.start
            seg = vma.pt[i0:i0 + (hi - lo)]
            old = (seg[(seg & PTE_PRESENT) != 0] >> PTE_SHIFT)
            old = old[old != 0]
            # page_remove_rmap searches the chain from its head for this PTE:
            # half the chain on average
            chain_steps = int(m.frames.mapcount[old].sum()) // 2
        before = m.counters["pgfault"]
        m.write(child, WINDOW_START + lo * PAGE_SIZE, hi - lo, 2)
        faults = m.counters["pgfault"] - before
        yield Compute(faults * c.fault)
        yield from self.section(self.ptl(mm), faults * c.pte_set + chain_steps * c.chain)

    def exit(self, child: str) -> Steps:
        """mmput: mmlist, unmap_vmas under the page table lock, unlink_anon_vmas,
        exit_rmap."""
        m, c, prof = self.m, self.c, self.prof
        mm = self.mm_of(child)
        zaps: list[float] = []
        unlinks: list[VMA] = list(mm.vmas)
        for vma in unlinks:
            pt = vma.pt
            n = int(np.count_nonzero(pt))
            searched = 0
            if prof.chains:
                f = pt[(pt & PTE_PRESENT) != 0] >> PTE_SHIFT
                searched = int(m.frames.mapcount[f[f != 0]].sum()) // 2
            zaps.append(n * c.zap_pte + searched * c.chain)
        # the lock objects are read before the exit frees them (the kernel
        # reads them under its locks; the model's exit is one step)
        link_steps = [list(self.link_sections(vma)) for vma in unlinks]
        anonmm = mm.anonmm
        head = self.anon_lock(anonmm) if prof.links == "mm" and anonmm is not None else None
        on_mmlist = mm.on_mmlist
        m.exit(child)
        if prof.mmlist_always or on_mmlist:
            yield from self.section(self.mmlist(), c.list_op)
        yield Compute(c.exit)
        for hold in zaps:
            yield from self.section(self.ptl(mm), hold)
        for steps in link_steps:
            yield from steps
        if head is not None:
            yield from self.section(head, c.link)

    # -- reclaim --------------------------------------------------------------------------
    def pick_page(self) -> int | None:
        """A mapped anonymous frame, drawn uniformly (up to 16 tries)."""
        ft = self.m.frames
        hi = ft.next_unused
        for _ in range(16):
            f = self.rng.randrange(1, hi) if hi > 1 else 0
            if f and ft.mapcount[f] > 0:
                return f
        return None

    def walk_lock(self, frame: int) -> Lock | None:
        if self.prof.walk_lock == "page":
            return self.sim.lock(("chain", frame), CHAIN)
        obj = self.m.frames.mapping[frame]
        return None if obj is None else self.anon_lock(obj)

    def reclaim(self) -> Steps:
        """shrink_page_list for one page: page_referenced, then maybe try_to_unmap."""
        frame = self.pick_page()
        if frame is None:
            return
        yield from self.walk(frame, unmap=False)
        if self.rng.random() < self.p.unmap:
            yield from self.walk(frame, unmap=True)

    def walk(self, frame: int, unmap: bool) -> Steps:
        """One rmap walk under the page's walk lock, priced by what it examined."""
        lk = self.walk_lock(frame)
        if lk is None:
            return
        yield Acquire(lk, not self.prof.anon_rwsem or lk.cls != ANON)
        rec = self.run_walk(frame, unmap)  # on the machine, now that the lock is held
        c = self.c
        hold = c.walk_hold(rec.vmas, rec.ptes)
        self.walks += 1
        self.unmap_walks += unmap
        self.walk_vmas += rec.vmas
        # which walks trylock the page table lock is the scheme's own fact
        trylock = ("unmap" if unmap else "referenced") in self.m.rmap.trylock_walks
        if trylock and rec.found:
            probes = tuple((c.walk_hold(v, p), self.ptl(mm)) for v, p, mm in rec.found)
            got = yield TryLocks(probes, hold)
            fails = got.count(False)
            if fails:
                self.trylock_fail += fails
                self.m.counters["trylock_fail"] += fails
                self.swap_again += unmap
                # a mapping not counted down: the walk goes on to the list's end
                rest = max(0, rec.listed - rec.vmas)
                if rest:
                    yield Compute(rest * (c.vma + c.pte))
                    hold += rest * (c.vma + c.pte)
        else:
            yield Compute(hold)
        self.walk_hold += hold
        yield Release(lk)

    def run_walk(self, frame: int, unmap: bool) -> WalkRecord:
        """rmap_walk with the kernel's mapcount countdown, charged, recording
        where each mapping was met. page_referenced clears young bits;
        try_to_unmap's walk is run without unmapping (see the docstring)."""
        m = self.m
        st = m.walks
        v0, p0, l0 = st.vmas, st.ptes, st.listed
        left = [int(m.frames.mapcount[frame])]
        rec = WalkRecord(0, 0, 0)
        if left[0] <= 0:
            return rec
        found = rec.found

        def one(f: int, vma: VMA, vpn: int) -> bool:
            found.append((st.vmas - v0, st.ptes - p0, vma.mm))
            if not unmap:
                i = vpn - vma.start
                pte = int(vma.pt[i])
                if pte & PTE_YOUNG:
                    vma.pt[i] = pte & ~PTE_YOUNG
            left[0] -= 1
            return left[0] > 0

        rmap_walk(m, frame, RmapWalkControl(one, kind="unmap" if unmap else "referenced"))
        if not unmap:
            m.rmap.referenced_end(frame, left[0] <= 0)  # anonmm's migration
        rec.vmas, rec.ptes, rec.listed = st.vmas - v0, st.ptes - p0, st.listed - l0
        return rec

    # -- running -------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        self.start()
        end = self.sim.run()
        return self.results(end)

    def results(self, end: float) -> dict[str, float]:
        sim, p = self.sim, self.p
        done = self.done_times
        warm = p.procs if len(done) > p.procs else 0
        t0 = done[warm - 1] if warm else 0.0
        span = max(end - t0, 1e-12)
        cpu = sim.cpu_time()
        total = max(cpu["total"], 1e-12)
        out: dict[str, float] = {
            "jobs": len(done) - warm,
            "sim_s": end,
            "throughput_jpm": (len(done) - warm) * 60.0 / span,
            "wait_share": cpu["spin"] / total,
            "busy_share": cpu["busy"] / total,
            "idle_share": cpu["idle"] / total,
            "walks": self.walks,
            "walk_vmas_avg": self.walk_vmas / max(self.walks, 1),
            "walk_hold_us_avg": 1e6 * self.walk_hold / max(self.walks, 1),
            "trylock_fail": self.trylock_fail,
            "swap_again": self.swap_again,
            "unmap_walks": self.unmap_walks,
        }
        classes = sim.by_class()
        for cls, short in ((ANON, "anon"), (PTL, "ptl"), (MMLIST, "mmlist"), (CHAIN, "chain")):
            s = classes.get(cls)
            if s is None:
                s = dict.fromkeys(("spin_wait", "sleep_wait", "max_hold", "max_queue",
                                   "acquisitions", "contended", "queue_area"), 0.0)
            out[f"wait_{short}"] = s["spin_wait"] / total
            out[f"sleep_{short}"] = s["sleep_wait"] / total
            out[f"hold_max_us_{short}"] = 1e6 * s["max_hold"]
            out[f"queue_max_{short}"] = int(s["max_queue"])
            out[f"contended_{short}"] = s["contended"] / max(s["acquisitions"], 1)
        hot = sim.hottest(ANON)
        out["hot_anon_queue_avg"] = hot.queue_area / max(end, 1e-12) if hot is not None else 0.0
        return out


def run_aim7(scheme: str, params: Aim7Params | None = None, *,
             costs: Costs = DEFAULT_COSTS) -> dict[str, float]:
    """Run the AIM7-like load for scheme; return its flat metrics."""
    return Aim7(scheme, params or Aim7Params(), costs).run()
