# SPDX-License-Identifier: GPL-2.0-only
"""Random forks, exits, VMA ops and faults with the checker after every step.

One Hypothesis state machine, run once per rmap scheme; two machines (one
per scheme pair) could be compared too, but that is test_schemes_agree's
job. At least 2,000 steps per scheme per run.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rmaplab.consts import WINDOW_START
from rmaplab.errors import OomKill, Segv, SysError
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES

PAGES = 48  # a small region, so ops collide
STEPS: dict[str, int] = {}  # checked steps per scheme (the acceptance floor is 2,000)
addrs = st.integers(0, PAGES - 1).map(lambda p: WINDOW_START + p * 4096)
sizes = st.integers(1, 12)
prots = st.sampled_from(["rw", "r", "none"])


def make_machine_class(scheme: str, frames: int) -> type[RuleBasedStateMachine]:
    class Model(RuleBasedStateMachine):
        @initialize()
        def boot(self) -> None:
            self.m = Machine(Config(scheme=scheme, frames=frames))
            self.n = 0
            self.m.spawn("t0")
            self.live = ["t0"]

        def _do(self, fn, *a) -> None:
            try:
                fn(*a)
            except (SysError, Segv):
                pass
            except OomKill:
                pass
            self.live = sorted(self.m.tasks)

        def _task(self, i: int) -> str | None:
            return self.live[i % len(self.live)] if self.live else None

        @precondition(lambda self: len(self.live) < 6)
        @rule(i=st.integers(0, 9))
        def fork(self, i: int) -> None:
            t = self._task(i)
            if t is None:
                self.n += 1
                self._do(self.m.spawn, f"s{self.n}")
                return
            self.n += 1
            self._do(self.m.fork, t, f"c{self.n}")

        @precondition(lambda self: len(self.live) > 1)
        @rule(i=st.integers(0, 9))
        def exit(self, i: int) -> None:
            self._do(self.m.exit, self._task(i))

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes, prot=prots)
        def mmap(self, i, a, n, prot) -> None:
            self._do(self.m.mmap, self._task(i), a, n, prot)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes)
        def munmap(self, i, a, n) -> None:
            self._do(self.m.munmap, self._task(i), a, n)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes, prot=prots)
        def mprotect(self, i, a, n, prot) -> None:
            self._do(self.m.mprotect, self._task(i), a, n, prot)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes, nn=sizes,
              to=st.one_of(st.none(), addrs))
        def mremap(self, i, a, n, nn, to) -> None:
            self._do(self.m.mremap, self._task(i), a, n, nn, to)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes, lock=st.booleans())
        def mlock(self, i, a, n, lock) -> None:
            self._do(self.m.mlock if lock else self.m.munlock, self._task(i), a, n)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes,
              advice=st.sampled_from(["dontneed", "free", "pageout", "cold", "willneed"]))
        def madvise(self, i, a, n, advice) -> None:
            self._do(self.m.madvise, self._task(i), a, n, advice)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes, v=st.integers(0, 255))
        def write(self, i, a, n, v) -> None:
            self._do(self.m.write, self._task(i), a, n, v)

        @precondition(lambda self: self.live)
        @rule(i=st.integers(0, 9), a=addrs, n=sizes)
        def read(self, i, a, n) -> None:
            self._do(self.m.read, self._task(i), a, n, [])

        @invariant()
        def checker(self) -> None:
            if hasattr(self, "m"):
                self.m.check()
                STEPS[scheme] = STEPS.get(scheme, 0) + 1

        def teardown(self) -> None:
            if hasattr(self, "m"):
                for t in list(self.m.tasks):
                    self.m.exit(t)
                self.m.check()
                assert not any(self.m.objects().values()), self.m.objects()

    Model.__name__ = f"Model_{scheme}"
    return Model


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_ops_keep_invariants(scheme: str) -> None:
    """Plenty of frames, then so few that the OOM killer acts often."""
    STEPS[scheme] = 0
    for frames in (4096, 40):
        cls = make_machine_class(scheme, frames)
        cls.TestCase.settings = settings(max_examples=40, stateful_step_count=60, deadline=None,
                                         suppress_health_check=list(HealthCheck))
        cls.TestCase().runTest()
    assert STEPS[scheme] >= 2000, f"only {STEPS[scheme]} checked steps"
