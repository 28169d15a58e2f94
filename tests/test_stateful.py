# SPDX-License-Identifier: GPL-2.0-only
"""Random forks, exits, VMA ops, faults, reclaim and swap with the checker
after every step.

One Hypothesis state machine per rmap scheme. A single rule draws the op
kind from a weighted list (Hypothesis would otherwise favour the rules with
the fewest arguments); addresses fall mostly inside the task's VMAs, so
faults, COW, swap and reclaim really happen, and sometimes anywhere in a
small region, so holes and errors happen too. At least 2,000 checked steps
per scheme per run.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rmaplab.consts import WINDOW_START
from rmaplab.errors import OomKill, Segv, SysError
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES

PAGES = 48  # a small region, so ops collide
STEPS: dict[str, int] = {}  # checked steps per scheme (the acceptance floor is 2,000)
COUNTERS: dict[str, dict[str, int]] = {}  # what the runs did, per scheme

KINDS = (["write"] * 5 + ["read"] * 2 + ["mmap"] * 3 + ["fork"] * 2
         + ["exit", "munmap", "mprotect", "mprotect", "mremap", "mremap", "mlock", "munlock",
            "madvise", "madvise", "swapon", "swapoff", "reclaim", "reclaim"])
ADVICE = ["dontneed", "free", "pageout", "cold", "willneed", "volatile"]


def make_machine_class(scheme: str, frames: int, unuse: str) -> type[RuleBasedStateMachine]:
    class Model(RuleBasedStateMachine):
        @initialize()
        def boot(self) -> None:
            self.m = Machine(Config(scheme=scheme, frames=frames, unuse=unuse))
            self.n = 0
            self.m.spawn("t0")

        def addr(self, task: str, kind: int, r: int) -> int:
            t = self.m.tasks.get(task)
            if kind >= 2 and t is not None and len(t.mm.vmas):
                v = t.mm.vmas[r % len(t.mm.vmas)]
                return (v.start + (r // 7) % (v.end - v.start)) << 12
            return WINDOW_START + (r % PAGES) * 4096

        @rule(kind=st.sampled_from(KINDS), i=st.integers(0, 9), w=st.integers(0, 9),
              r=st.integers(0, 10**6), n=st.integers(1, 16), n2=st.integers(1, 12),
              prot=st.sampled_from(["rw", "r", "none"]), v=st.integers(0, 255),
              dst=st.one_of(st.none(), st.integers(0, 10**6)),
              advice=st.sampled_from(ADVICE))
        def step(self, kind, i, w, r, n, n2, prot, v, dst, advice) -> None:
            m = self.m
            live = sorted(m.tasks)
            if not live:
                self.n += 1
                m.spawn(f"s{self.n}")
                return
            t = live[i % len(live)]
            a = self.addr(t, w, r)
            try:
                if kind == "write":
                    m.write(t, a, n, v)
                elif kind == "read":
                    m.read(t, a, n, [])
                elif kind == "mmap":
                    m.mmap(t, self.addr(t, 0, r), n, prot)
                elif kind == "fork":
                    self.n += 1
                    if len(live) < 6:
                        m.fork(t, f"c{self.n}")
                elif kind == "exit":
                    if len(live) > 1:
                        m.exit(t)
                elif kind == "munmap":
                    m.munmap(t, a, n)
                elif kind == "mprotect":
                    m.mprotect(t, a, n, prot)
                elif kind == "mremap":
                    m.mremap(t, a, n, n2, None if dst is None else self.addr(t, 0, dst))
                elif kind == "mlock":
                    m.mlock(t, a, n)
                elif kind == "munlock":
                    m.munlock(t, a, n)
                elif kind == "madvise":
                    m.madvise(t, a, n, advice)
                elif kind == "swapon":
                    m.swapon(n * 4)
                elif kind == "swapoff":
                    m.swapoff()
                    assert not m.mmlist, "drain_mmlist left mms on mmlist"
                    assert all(x.mm.swapents == 0 for x in m.tasks.values())
                elif kind == "reclaim":
                    m.reclaim(n)
            except (SysError, Segv, OomKill):
                pass

        @invariant()
        def checker(self) -> None:
            if hasattr(self, "m"):
                self.m.check()
                STEPS[scheme] = STEPS.get(scheme, 0) + 1

        def teardown(self) -> None:
            if hasattr(self, "m"):
                tally = COUNTERS.setdefault(scheme, {})
                for k, c in self.m.counters.items():
                    tally[k] = tally.get(k, 0) + c
                for t in list(self.m.tasks):
                    self.m.exit(t)
                self.m.check()
                left = {k: c for k, c in self.m.objects().items() if c}
                # pages may stay in the swap cache of a swap area still on
                assert not left or (set(left) == {"page"} and self.m.swap is not None), left

    Model.__name__ = f"Model_{scheme}"
    return Model


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_ops_keep_invariants(scheme: str) -> None:
    """Plenty of frames, then so few that reclaim and the OOM killer act often."""
    STEPS[scheme] = 0
    COUNTERS[scheme] = {}
    for frames, unuse in ((4096, "2019"), (20, "2004"), (20, "2019"), (8, "2019")):
        cls = make_machine_class(scheme, frames, unuse)
        cls.TestCase.settings = settings(max_examples=30, stateful_step_count=60, deadline=None,
                                         suppress_health_check=list(HealthCheck))
        cls.TestCase().runTest()
    assert STEPS[scheme] >= 2000, f"only {STEPS[scheme]} checked steps"
    done = COUNTERS[scheme]
    for what in ("cow", "cow_reuse", "pswpout", "pswpin", "pgsteal", "swapoff_ptes"):
        assert done[what] > 0, f"the random runs never exercised {what}: {done}"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_seeded_random_runs_keep_invariants(scheme: str) -> None:
    """The same op mix drawn by random.Random (Hypothesis favours small values,
    so starved machines rarely reach the OOM killer there): 60 runs of 60
    steps on machines of 8 and 20 frames, checker after every step."""
    import random

    tally: dict[str, int] = {}
    for seed in range(30):
        for frames, unuse in ((8, "2019"), (20, "2004")):
            rnd = random.Random(seed)
            cls = make_machine_class(scheme, frames, unuse)
            mdl = cls.__new__(cls)
            RuleBasedStateMachine.__init__(mdl)
            mdl.boot()
            for _ in range(60):
                cls.step(mdl, kind=rnd.choice(KINDS), i=rnd.randint(0, 9), w=rnd.randint(0, 9),
                         r=rnd.randint(0, 10**6), n=rnd.randint(1, 16), n2=rnd.randint(1, 16),
                         prot=rnd.choice(["rw", "r", "none"]), v=rnd.randint(0, 255),
                         dst=rnd.choice([None, rnd.randint(0, 10**6)]),
                         advice=rnd.choice(ADVICE))
                mdl.m.check()
            for k, c in mdl.m.counters.items():
                tally[k] = tally.get(k, 0) + c
            mdl.teardown()
    for what in ("oom_kill", "pswpout", "pswpin", "cow", "swapoff_ptes"):
        assert tally[what] > 0, f"the seeded runs never exercised {what}: {tally}"
