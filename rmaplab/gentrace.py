# SPDX-License-Identifier: GPL-2.0-only
"""Seeded random trace generator (docs/trace-format.md, version 1).

generate_trace() writes traces that always pass trace.parse_trace_lines()
and are meant to make ops collide: every address falls in a small region at
the start of the trace window (most in its first 2 MiB), ranges are picked
around what the task has mapped (inside a mapping, exactly one, spanning
mappings and holes, or at random), so a trace meets EEXIST, ENOMEM, EFAULT
and SIGSEGV as well as successes, shared and swapped pages.

Invariants the generator keeps, so a trace is quick and deterministic on a
real kernel:

- ``maybe[task]`` is a superset of the pages the task can have mapped at
  that point, whatever the ops' outcomes (munmap is the only op that shrinks
  it), and ``sure[task]`` a subset (pages mapped for certain); mmap and
  mremap growth stop at MAX_TASK_PAGES of ``maybe`` per task.
- ``swap_bound`` is an upper bound on the swap slots in use since the last
  swapon: each ``pageout`` adds the pages of its range in ``maybe``, each
  ``reclaim`` its page count; it never exceeds half of ``swap_pages``
  (docs/trace-format.md: past half full the kernel is not repeatable).
- At most ``tasks`` tasks are alive; the last one exits only rarely.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from .consts import MAX_PAGES, PAGE_SIZE, WINDOW_START

#: Pages of the region all generated addresses fall in (64 MiB).
REGION_PAGES = 16384
#: Pages at the region's start where most ops land, so that they meet.
HOT_PAGES = 512
#: Upper bound on the pages one task may have mapped (kept by mmap/mremap).
MAX_TASK_PAGES = 256
#: Largest range one op names, in pages.
MAX_RANGE = 64

# Relative weights of the ops a task can do; tuned so that mappings exist
# most of the time and accesses hit them.
_TASK_OP_WEIGHTS = {
    "mmap": 12, "munmap": 5, "mprotect": 5, "mremap": 6, "mlock": 2,
    "munlock": 2, "madvise": 7, "write": 12, "read": 10,
}
_PROTS = ("rw",) * 6 + ("r",) * 3 + ("none",)


class _Generator:
    """The state one generate_trace() call keeps (no module-level state)."""

    def __init__(self, seed: int, tasks: int, kernel_only: bool, no_swap: bool,
                 swap_pages: int) -> None:
        self.rng = random.Random(seed)
        self.max_tasks = tasks
        self.kernel_only = kernel_only
        self.no_swap = no_swap
        self.swap_pages = swap_pages
        self.pending: list[str] = []  # lines emitted, not yet handed out
        self.count = 0  # lines emitted in all
        self.live: list[str] = []  # a list, not a set: choices must be ordered
        self.maybe: dict[str, set[int]] = {}  # page indexes from WINDOW_START
        self.sure: dict[str, set[int]] = {}
        self.names = 0
        self.swap_on = False
        self.swapon_done = False
        self.swap_bound = 0
        self.snapshots = 0

    # -- output ----------------------------------------------------------

    def emit(self, op: str, **keys: Any) -> None:
        obj: dict[str, Any] = {"op": op}
        for key, value in keys.items():
            obj[key] = (f"{WINDOW_START + value * PAGE_SIZE:#x}" if key in ("addr", "new_addr")
                        else value)
        self.pending.append(json.dumps(obj))
        self.count += 1

    def snapshot(self, label: str | None = None) -> None:
        self.snapshots += 1
        self.emit("snapshot", label=label or f"snap-{self.snapshots}")

    # -- address choice ----------------------------------------------------

    def runs(self, task: str) -> list[tuple[int, int]]:
        """Maximal runs (start, length) of the task's possibly mapped pages."""
        out: list[tuple[int, int]] = []
        for page in sorted(self.maybe[task]):
            if out and out[-1][0] + out[-1][1] == page:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((page, 1))
        return out

    def random_page(self) -> int:
        rng = self.rng
        return rng.randrange(HOT_PAGES) if rng.random() < 0.85 else rng.randrange(REGION_PAGES)

    @staticmethod
    def clip(start: int, pages: int) -> tuple[int, int]:
        start = max(0, min(start, REGION_PAGES - 1))
        return start, max(1, min(pages, REGION_PAGES - start))

    def pick_range(self, task: str) -> tuple[int, int]:
        """A range inside a mapping, exactly one, across several, or anywhere."""
        rng = self.rng
        runs = self.runs(task)
        mode = rng.random()
        if runs and mode < 0.45:
            start, length = rng.choice(runs)
            first = start + rng.randrange(length)
            return self.clip(first, rng.randint(1, min(MAX_RANGE, start + length - first)))
        if runs and mode < 0.6:
            return self.clip(*rng.choice(runs))
        if runs and mode < 0.8:
            # From just before or inside one run to past its end: holes and
            # further runs included.
            index = rng.randrange(len(runs))
            start, length = runs[index]
            first = start + rng.randint(-4, length - 1)
            if index + 1 < len(runs) and rng.random() < 0.6:
                nxt, nlen = runs[index + 1]
                last = nxt + rng.randrange(nlen)
            else:
                last = start + length + rng.randint(0, 8)
            return self.clip(first, min(2 * MAX_RANGE, max(1, last - first + 1)))
        return self.clip(self.random_page(), rng.randint(1, MAX_RANGE))

    def pick_place(self, task: str, pages: int) -> int:
        """A start page for a new mapping: overlapping, adjacent or random."""
        rng = self.rng
        runs = self.runs(task)
        mode = rng.random()
        if runs and mode < 0.2:  # overlaps a mapping: EEXIST
            start, length = rng.choice(runs)
            return start + rng.randrange(length) - rng.randrange(pages)
        if runs and mode < 0.5:  # touches a mapping: VMA merges
            start, length = rng.choice(runs)
            return start + length if rng.random() < 0.6 else start - pages
        return self.random_page()

    def add(self, task: str, start: int, pages: int) -> None:
        self.maybe[task].update(range(start, start + pages))

    def mapped_in(self, task: str, start: int, pages: int) -> int:
        have = self.maybe[task]
        return sum(1 for page in range(start, start + pages) if page in have)

    # -- ops -----------------------------------------------------------------

    def new_name(self) -> str:
        self.names += 1
        return f"t{self.names}"

    def spawn(self) -> None:
        name = self.new_name()
        self.live.append(name)
        self.maybe[name] = set()
        self.sure[name] = set()
        self.emit("spawn", task=name)

    def fork(self, task: str) -> None:
        child = self.new_name()
        self.live.append(child)
        self.maybe[child] = set(self.maybe[task])
        self.sure[child] = set(self.sure[task])
        self.emit("fork", task=task, child=child)

    def exit(self, task: str) -> None:
        self.live.remove(task)
        del self.maybe[task], self.sure[task]
        self.emit("exit", task=task)

    def mmap(self, task: str) -> None:
        rng = self.rng
        pages = rng.randint(1, MAX_RANGE)
        start, pages = self.clip(self.pick_place(task, pages), pages)
        room = MAX_TASK_PAGES - len(self.maybe[task])
        if pages > room:
            self.munmap(task)
            return
        pages_range = range(start, start + pages)
        if self.maybe[task].isdisjoint(pages_range):
            self.sure[task].update(pages_range)  # nothing there: it works
            self.add(task, start, pages)
        elif self.sure[task].isdisjoint(pages_range):
            self.add(task, start, pages)  # may work; else surely EEXIST
        self.emit("mmap", task=task, addr=start, pages=pages, prot=rng.choice(_PROTS))

    def munmap(self, task: str) -> None:
        start, pages = self.pick_range(task)
        self.maybe[task].difference_update(range(start, start + pages))
        self.sure[task].difference_update(range(start, start + pages))
        self.emit("munmap", task=task, addr=start, pages=pages)

    def mremap(self, task: str) -> None:
        rng = self.rng
        runs = self.runs(task)
        index = -1
        if runs and rng.random() < 0.6:
            # A whole mapping, or its head: likely one VMA, so the call works.
            index = rng.randrange(len(runs))
            start, length = runs[index]
            pages = rng.randint(1, length) if rng.random() < 0.4 else length
            start, pages = self.clip(start, min(pages, 2 * MAX_RANGE))
        else:
            start, pages = self.pick_range(task)
        kind = rng.random()
        if kind < 0.45:
            new_pages = pages + rng.randint(1, 32)
        elif kind < 0.8 and pages > 1:
            new_pages = rng.randint(1, pages - 1)
        else:
            new_pages = pages
        keys: dict[str, Any] = {}
        if rng.random() < 0.4:
            if runs and rng.random() < 0.4:  # into an occupied range
                ostart, olen = rng.choice(runs)
                target = ostart + rng.randrange(olen)
            else:
                target = self.random_page()
            target, new_pages = self.clip(target, new_pages)
            keys["new_addr"] = target
        else:
            target = start
            if 0 <= index < len(runs) - 1 and rng.random() < 0.5:
                # Grow in place into the next mapping: ENOMEM.
                new_pages = runs[index + 1][0] - start + rng.randint(1, 8)
            new_pages = max(1, min(new_pages, REGION_PAGES - start))
        # Success is never certain here: both ranges may end up unmapped.
        self.sure[task].difference_update(range(start, start + pages))
        self.sure[task].difference_update(range(target, target + new_pages))
        if self.mapped_in(task, start, pages) == pages:
            # Only a fully mapped old range can move or grow.
            growth = new_pages - self.mapped_in(task, target, new_pages)
            if len(self.maybe[task]) + growth > MAX_TASK_PAGES:
                if target != start:
                    self.munmap(task)
                    return
                new_pages = rng.randint(1, pages)  # shrink or keep: no growth
            self.add(task, target, new_pages)
        self.emit("mremap", task=task, addr=start, pages=pages, new_pages=new_pages, **keys)

    def madvise(self, task: str) -> None:
        rng = self.rng
        advices = ["dontneed", "cold", "willneed"]
        weights = [3, 1, 1]
        if not self.no_swap:
            advices += ["free", "pageout"]
            weights += [3, 5]
        if not self.kernel_only:
            advices.append("volatile")
            weights.append(1)
        advice = rng.choices(advices, weights)[0]
        start, pages = self.pick_range(task)
        if advice == "pageout":
            left = self.swap_pages // 2 - self.swap_bound
            may_swap = self.mapped_in(task, start, pages)
            if may_swap > left:
                advice = "cold"
            else:
                self.swap_bound += may_swap
        self.emit("madvise", task=task, addr=start, pages=pages, advice=advice)

    def access(self, task: str, op: str) -> None:
        start, pages = self.pick_range(task)
        if op == "write":
            self.emit("write", task=task, addr=start, pages=pages,
                      value=self.rng.randrange(256))
        else:
            self.emit("read", task=task, addr=start, pages=pages)

    def reclaim(self) -> bool:
        left = self.swap_pages // 2 - self.swap_bound
        if left < 1:
            return False
        pages = min(self.rng.randint(1, MAX_RANGE), left)
        self.swap_bound += pages
        self.emit("reclaim", pages=pages)
        return True

    def swapon(self) -> None:
        if not self.swap_on:
            # Nothing can be in swap while it is off: the bound starts afresh.
            self.swap_on, self.swap_bound = True, 0
        self.swapon_done = True
        self.emit("swapon", pages=self.swap_pages)

    def swapoff(self) -> None:
        self.swap_on, self.swap_bound = False, 0
        self.emit("swapoff")

    # -- the driver ------------------------------------------------------------

    def step(self) -> None:
        """Emit one op (never a snapshot)."""
        rng = self.rng
        if not self.live:
            self.spawn()
            return
        weights: dict[str, float] = {}
        if len(self.live) < self.max_tasks:
            weights.update(spawn=2, fork=4)
        weights["exit"] = 2 if len(self.live) > 1 else 0.1
        if not self.no_swap and self.swapon_done:
            full = self.swap_bound * 4 >= self.swap_pages  # half the half used
            if self.swap_on:
                weights.update(swapoff=4 if full else 0.5, swapon=0.2)
            else:
                weights.update(swapon=4, swapoff=0.1)
            if not self.kernel_only:
                weights["reclaim"] = 1
        task = rng.choice(self.live)
        crowded = len(self.maybe[task]) > MAX_TASK_PAGES * 3 // 4
        for op, weight in _TASK_OP_WEIGHTS.items():
            weights[op] = weight * 4 if crowded and op == "munmap" else weight
        op = rng.choices(list(weights), list(weights.values()))[0]
        if op == "spawn":
            self.spawn()
        elif op == "fork":
            self.fork(task)
        elif op == "exit":
            self.exit(task)
        elif op == "swapon":
            self.swapon()
        elif op == "swapoff":
            self.swapoff()
        elif op == "reclaim":
            if not self.reclaim():
                self.access(task, "read")
        elif op in ("write", "read"):
            self.access(task, op)
        elif op in ("mprotect", "mlock", "munlock"):
            start, pages = self.pick_range(task)
            keys = {"prot": rng.choice(_PROTS)} if op == "mprotect" else {}
            self.emit(op, task=task, addr=start, pages=pages, **keys)
        else:
            getattr(self, op)(task)

    def run(self, ops: int) -> Iterator[str]:
        """Yield the trace's lines as they are made: memory stays bounded."""
        rng = self.rng
        swapon_at = -1 if self.no_swap else rng.randint(1, 3)
        next_snapshot = rng.randint(8, 12)
        while self.count < ops - 1:
            count = self.count
            if count == swapon_at:
                self.swapon()
            elif count >= next_snapshot:
                self.snapshot()
                next_snapshot = count + rng.randint(8, 12)
            else:
                self.step()
            yield from self.pending
            self.pending.clear()
        if ops > 0:
            self.snapshot("end")
            yield from self.pending
            self.pending.clear()


def trace_lines(seed: int, ops: int, tasks: int = 4, kernel_only: bool = False,
                no_swap: bool = False, swap_pages: int = 256) -> Iterator[str]:
    """generate_trace()'s lines one by one, as they are made (bounded memory)."""
    if ops < 0:
        raise ValueError(f"ops must be 0 or more, got {ops}")
    if tasks < 1:
        raise ValueError(f"tasks must be 1 or more, got {tasks}")
    if not 1 <= swap_pages <= MAX_PAGES:
        raise ValueError(f"swap_pages must be from 1 to {MAX_PAGES}, got {swap_pages}")
    return _Generator(seed, tasks, kernel_only, no_swap, swap_pages).run(ops)


def generate_trace(seed: int, ops: int, tasks: int = 4, kernel_only: bool = False,
                   no_swap: bool = False, swap_pages: int = 256) -> list[str]:
    """Return a valid trace of `ops` JSON lines (snapshots included, the last one
    a snapshot), the same for the same arguments.

    `tasks` caps the live tasks; `kernel_only` leaves out model-only ops
    (reclaim, madvise volatile); `no_swap` leaves out swapon, swapoff,
    reclaim and madvise free/pageout; `swap_pages` is the swapon size.
    Cost: O(ops * MAX_TASK_PAGES); trace_lines() yields the same lines one by one.
    """
    return list(trace_lines(seed, ops, tasks=tasks, kernel_only=kernel_only,
                            no_swap=no_swap, swap_pages=swap_pages))
