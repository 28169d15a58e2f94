# SPDX-License-Identifier: GPL-2.0-only
"""The discrete-event core: K CPUs running jobs that take locks.

What it models: a machine of ``cpus`` CPUs, a FIFO run queue of jobs, and
the locks the jobs take. A job is a Python generator that yields steps:

  Compute(t)          run for t seconds (the CPU is busy)
  Acquire(lock, w)    take lock (w: for writing; readers share an rwsem)
  Release(lock)       let it go; waiters are granted in FIFO order
  TryLocks(probes, t) run for t seconds, trying each (offset, lock) on the way
                      (spin_trylock); the job is sent back one bool per probe:
                      True when the lock was free at that instant
  PREEMPT             go to the back of the run queue (a time-slice end)

Assumptions:
  - No wall clock and no randomness: time is a float advanced only by the
    event heap, ties are broken by insertion order, so one input gives one
    result (the workload's own random choices use a seeded random.Random).
  - A spinlock waiter spins: its CPU is busy doing nothing (counted as
    waiting). A sleeping lock's waiter (an rwsem) leaves its CPU to the run
    queue and is queued again when granted.
  - Locks are fair (FIFO): a reader does not overtake a queued writer. A
    released rwsem wakes its first waiter, or all readers at the head; a
    woken sleeper goes to the head of the run queue (wakeup preemption).
  - A trylock probe is answered from the lock's hold history at the probe's
    own instant, when the whole TryLocks step has run; the prober's own
    momentary hold of a lock it got is not seen by others (it would last one
    PTE update, far below the holds that matter here).
  - Jobs are not preempted while they run a step: preemption happens only
    where a job yields PREEMPT (between slices of work, never with a lock).

Lock order is the workload's business (see profiles.py); the core only
records what happens: per lock, acquisitions, contended acquisitions,
waiting time (spun or slept), hold times, the longest hold and the longest
queue; per CPU, busy, spinning and idle time.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

#: Intervals that ended longer ago than this (simulated seconds) are
#: dropped from a lock's hold history; it grows to the longest TryLocks step.
HISTORY_HORIZON = 0.05


@dataclass(slots=True, eq=False)
class Lock:
    """One lock: a spinlock, or an rwsem (rw=True, sleeps=True).

    State: ``writer`` (the job holding it exclusively) or ``readers``
    (how many hold it shared), ``waiters`` in FIFO order. ``hist_start``/
    ``hist_end`` are the closed exclusive holds, oldest first (they never
    overlap, so both lists are sorted), for trylock probes.
    """

    name: str
    cls: str  # lock class, for the per-class statistics
    rw: bool = False
    sleeps: bool = False
    writer: Job | None = None
    readers: int = 0
    since: float = 0.0
    waiters: deque[Waiter] = field(default_factory=deque)
    hist_start: list[float] = field(default_factory=list)
    hist_end: list[float] = field(default_factory=list)
    acquisitions: int = 0
    contended: int = 0
    spin_wait: float = 0.0
    sleep_wait: float = 0.0
    hold: float = 0.0
    max_hold: float = 0.0
    max_queue: int = 0
    queue_area: float = 0.0  # integral of the queue length over time
    queue_t: float = 0.0  # when queue_area was last brought up to date
    trylocks: int = 0
    trylock_fail: int = 0

    def free_for(self, write: bool) -> bool:
        return self.writer is None and (not write or self.readers == 0)

    def held_at(self, t: float) -> bool:
        """Was the lock held exclusively at instant t (t <= now)?"""
        if self.writer is not None and self.since <= t:
            return True
        i = bisect_right(self.hist_start, t) - 1
        return i >= 0 and self.hist_end[i] > t


@dataclass(slots=True, eq=False)
class Job:
    """A generator of steps, and where it stands."""

    gen: Generator[Any, Any, None]
    name: str
    on_done: Callable[[Job], None] | None = None
    held: dict[Lock, float] = field(default_factory=dict)  # lock -> when taken


@dataclass(slots=True, eq=False)
class Waiter:
    job: Job
    write: bool
    since: float
    cpu: Cpu | None  # the spinning CPU, or None for a sleeper


@dataclass(slots=True, eq=False)
class Cpu:
    index: int
    job: Job | None = None
    busy: float = 0.0  # Compute and TryLocks time
    spin: float = 0.0  # spinning on a lock
    idle_since: float | None = 0.0
    idle: float = 0.0


@dataclass(slots=True, frozen=True)
class Compute:
    t: float


@dataclass(slots=True, frozen=True)
class Acquire:
    lock: Lock
    write: bool = True


@dataclass(slots=True, frozen=True)
class Release:
    lock: Lock


@dataclass(slots=True, frozen=True)
class TryLocks:
    probes: tuple[tuple[float, Lock], ...]  # (offset from the step's start, lock)
    t: float  # the step's duration; every offset is <= t


class _Preempt:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PREEMPT"


PREEMPT = _Preempt()

Step = Compute | Acquire | Release | TryLocks | _Preempt


class _Probe:
    """Marks an event that answers a TryLocks step begun at ``start``."""

    __slots__ = ("probes", "start")

    def __init__(self, start: float, probes: tuple[tuple[float, Lock], ...]) -> None:
        self.start = start
        self.probes = probes


class Sim:
    """The event loop. Build locks with lock(), add jobs with spawn(), run().

    Cost: O(log events) per step; one heap event per Compute, TryLocks,
    dispatch and wake-up.
    """

    def __init__(self, cpus: int) -> None:
        if cpus < 1:
            raise ValueError("cpus must be at least 1")
        self.now = 0.0
        self.cpus = [Cpu(i) for i in range(cpus)]
        self.runq: deque[Job] = deque()
        self.locks: dict[object, Lock] = {}
        self._events: list[tuple[float, int, Cpu, Job, object]] = []
        self._seq = 0
        self.stopped = False
        self.steps = 0
        self.horizon = HISTORY_HORIZON
        self._unbooked: list[tuple[Cpu, float]] = []

    # -- building -------------------------------------------------------------
    def lock(self, key: object, cls: str, *, rw: bool = False, sleeps: bool = False) -> Lock:
        """The lock named key (made on first use)."""
        lk = self.locks.get(key)
        if lk is None:
            lk = self.locks[key] = Lock(str(key), cls, rw=rw, sleeps=sleeps)
        return lk

    def spawn(self, gen: Generator[Any, Any, None], name: str = "",
              on_done: Callable[[Job], None] | None = None) -> Job:
        job = Job(gen, name, on_done)
        self.runq.append(job)
        self._dispatch()
        return job

    def stop(self) -> None:
        self.stopped = True

    # -- running ----------------------------------------------------------------
    def run(self, max_time: float = float("inf"), max_steps: int = 50_000_000) -> float:
        """Run until stop(), no event is left, or max_time; returns the time."""
        ev = self._events
        for cpu, t in self._unbooked:  # a run going on after max_time
            cpu.busy += t
        self._unbooked.clear()
        while ev and not self.stopped:
            t, _, cpu, job, value = heapq.heappop(ev)
            if t > max_time:
                heapq.heappush(ev, (t, _, cpu, job, value))
                self.now = max_time
                break
            self.now = t
            if isinstance(value, _Probe):
                value = self._answer(job, value)
            self._resume(cpu, job, value)
            if self.steps > max_steps:
                raise RuntimeError(f"simulation exceeded {max_steps} steps at t={self.now}")
        self._close_books()
        return self.now

    def _close_books(self) -> None:
        """Account the end time: work scheduled past it was not done, and
        CPUs still spinning have spun until now."""
        for t, _, cpu, _job, _value in self._events:
            if t > self.now:
                cpu.busy -= t - self.now
                self._unbooked.append((cpu, t - self.now))
        for lk in self.locks.values():
            self._queue_tick(lk)
            for w in lk.waiters:
                if w.cpu is not None:
                    w.cpu.spin += self.now - w.since
                    lk.spin_wait += self.now - w.since
                    w.since = self.now
                else:
                    lk.sleep_wait += self.now - w.since
                    w.since = self.now
        for cpu in self.cpus:
            if cpu.idle_since is not None:
                cpu.idle += self.now - cpu.idle_since
                cpu.idle_since = self.now

    def _push(self, t: float, cpu: Cpu, job: Job, value: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, cpu, job, value))

    def _dispatch(self) -> None:
        """Give queued jobs to idle CPUs, lowest index first."""
        for cpu in self.cpus:
            if not self.runq:
                return
            if cpu.job is None:
                job = self.runq.popleft()
                cpu.job = job
                if cpu.idle_since is not None:
                    cpu.idle += self.now - cpu.idle_since
                    cpu.idle_since = None
                self._push(self.now, cpu, job, None)

    def _free(self, cpu: Cpu) -> None:
        cpu.job = None
        cpu.idle_since = self.now
        self._dispatch()

    def _resume(self, cpu: Cpu, job: Job, value: object) -> None:
        """Run job on cpu from where it stopped until it must wait for time."""
        gen = job.gen
        while True:
            self.steps += 1
            try:
                step = gen.send(value)
            except StopIteration:
                if job.held:
                    raise RuntimeError(f"job {job.name} ended holding "
                                       f"{', '.join(lk.name for lk in job.held)}") from None
                self._free(cpu)
                if job.on_done is not None:
                    job.on_done(job)
                return
            value = None
            if isinstance(step, Compute):
                if step.t <= 0:
                    continue
                cpu.busy += step.t
                self._push(self.now + step.t, cpu, job, None)
                return
            if isinstance(step, Acquire):
                if self._acquire(cpu, job, step.lock, step.write):
                    continue
                return
            if isinstance(step, Release):
                self._release(job, step.lock)
                continue
            if isinstance(step, TryLocks):
                self.horizon = max(self.horizon, step.t)  # keep the history it needs
                cpu.busy += step.t
                self._push(self.now + step.t, cpu, job, _Probe(self.now, step.probes))
                return
            if step is PREEMPT:
                self.runq.append(job)
                self._free(cpu)
                return
            raise TypeError(f"job {job.name} yielded {step!r}, not a step")

    # -- locks ------------------------------------------------------------------
    def _acquire(self, cpu: Cpu, job: Job, lk: Lock, write: bool) -> bool:
        """Take lk now (True) or queue for it (False: the job waits)."""
        if lk in job.held:
            raise RuntimeError(f"job {job.name} takes {lk.name} twice")
        write = write or not lk.rw
        lk.acquisitions += 1
        if not lk.waiters and lk.free_for(write):
            self._grant(job, lk, write)
            return True
        lk.contended += 1
        self._queue_tick(lk)
        if lk.sleeps:
            lk.waiters.append(Waiter(job, write, self.now, None))
            self._free(cpu)
        else:
            lk.waiters.append(Waiter(job, write, self.now, cpu))
        lk.max_queue = max(lk.max_queue, len(lk.waiters))
        return False

    def _queue_tick(self, lk: Lock) -> None:
        lk.queue_area += len(lk.waiters) * (self.now - lk.queue_t)
        lk.queue_t = self.now

    def _grant(self, job: Job, lk: Lock, write: bool) -> None:
        if write:
            lk.writer = job
            lk.since = self.now
        else:
            lk.readers += 1
        job.held[lk] = self.now

    def _release(self, job: Job, lk: Lock) -> None:
        t0 = job.held.pop(lk, None)
        if t0 is None:
            raise RuntimeError(f"job {job.name} releases {lk.name}, which it does not hold")
        held = self.now - t0
        lk.hold += held
        lk.max_hold = max(lk.max_hold, held)
        if lk.writer is job:
            lk.writer = None
            lk.hist_start.append(t0)
            lk.hist_end.append(self.now)
            if len(lk.hist_start) > 512:
                cut = bisect_right(lk.hist_end, self.now - self.horizon)
                del lk.hist_start[:cut], lk.hist_end[:cut]
        else:
            lk.readers -= 1
        self._wake(lk)

    def _wake(self, lk: Lock) -> None:
        """Grant lk to waiters at the head of its queue, FIFO."""
        while lk.waiters and lk.free_for(lk.waiters[0].write):
            self._queue_tick(lk)
            w = lk.waiters.popleft()
            waited = self.now - w.since
            self._grant(w.job, lk, w.write)
            if w.cpu is not None:
                lk.spin_wait += waited
                w.cpu.spin += waited
                self._push(self.now, w.cpu, w.job, None)
            else:
                lk.sleep_wait += waited
                # a woken task runs next (wakeup preemption): a granted lock
                # should not wait behind the whole run queue
                self.runq.appendleft(w.job)
                self._dispatch()
            if w.write:
                break

    def _answer(self, job: Job, probe: _Probe) -> list[bool]:
        """The outcome of each trylock of a TryLocks step that just ended."""
        out = []
        for off, lk in probe.probes:
            t = probe.start + off
            got = lk.writer is not job and not lk.held_at(t)
            lk.trylocks += 1
            if not got:
                lk.trylock_fail += 1
            out.append(got)
        return out

    # -- results ------------------------------------------------------------------
    def by_class(self) -> dict[str, dict[str, float]]:
        """Per lock class: totals, and the worst single lock's max hold and queue."""
        out: dict[str, dict[str, float]] = {}
        for lk in self.locks.values():
            c = out.setdefault(lk.cls, dict.fromkeys(
                ("locks", "acquisitions", "contended", "spin_wait", "sleep_wait", "hold",
                 "max_hold", "max_queue", "trylocks", "trylock_fail", "queue_area"), 0.0))
            c["locks"] += 1
            for k in ("acquisitions", "contended", "spin_wait", "sleep_wait", "hold",
                      "trylocks", "trylock_fail", "queue_area"):
                c[k] += getattr(lk, k)
            c["max_hold"] = max(c["max_hold"], lk.max_hold)
            c["max_queue"] = max(c["max_queue"], lk.max_queue)
        return out

    def hottest(self, cls: str | None = None) -> Lock | None:
        """The lock that was waited for longest (of class cls)."""
        cands: Iterable[Lock] = (lk for lk in self.locks.values() if cls is None or lk.cls == cls)
        return max(cands, key=lambda lk: (lk.spin_wait + lk.sleep_wait, lk.acquisitions),
                   default=None)

    def cpu_time(self) -> dict[str, float]:
        busy = sum(c.busy for c in self.cpus)
        spin = sum(c.spin for c in self.cpus)
        idle = sum(c.idle for c in self.cpus)
        return {"busy": busy, "spin": spin, "idle": idle, "total": self.now * len(self.cpus)}
