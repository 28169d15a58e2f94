# SPDX-License-Identifier: GPL-2.0-only
"""Fail every allocation site in turn during fork, mprotect, mremap, munmap.

For each op the allocations it makes are counted once; then, on a fresh
machine each time, the k-th one fails. The syscall must return ENOMEM (or
succeed where the kernel ignores that failure), leave the address space as
Linux does (unchanged for fork and for an op on one VMA, up to a split that
Linux too leaves done; for an op over several VMAs, what was done before the
failure stays), leak nothing, and keep the checker clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from rmaplab.consts import WINDOW_START
from rmaplab.errors import SysError
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES

A = WINDOW_START
P = 4096


def setup(scheme: str) -> Machine:
    """A parent with three VMAs (two written), a child sharing them, and a
    grandchild: anon_vma chains of length 1, 2 and 3."""
    m = Machine(Config(scheme=scheme, frames=10_000))
    m.spawn("p")
    m.mmap("p", A, 16, "rw")
    m.write("p", A, 16, 1)
    m.mmap("p", A + 20 * P, 8, "rw")
    m.read("p", A + 20 * P, 8, [])
    m.mmap("p", A + 32 * P, 8, "r")
    m.mprotect("p", A + 4 * P, 2, "r")  # split the written VMA
    m.mmap("p", A + 44 * P, 4, "rw")
    m.write("p", A + 44 * P, 4, 4)
    m.mprotect("p", A + 44 * P, 4, "r")
    m.mmap("p", A + 40 * P, 4, "rw")  # no anon_vma: a merge must dup_anon_vma
    m.mmap("p", A + 60 * P, 2, "rw")  # growing it reaches a written VMA: dup again
    m.mmap("p", A + 64 * P, 2, "rw")
    m.write("p", A + 64 * P, 2, 5)
    m.fork("p", "c")
    m.write("c", A, 3, 2)
    m.fork("c", "g")
    m.write("g", A + 8 * P, 2, 3)
    return m


def coalesced(vmas: list[dict]) -> list[tuple]:
    out: list[list] = []
    for v in vmas:
        s, e = int(v["start"], 16), int(v["end"], 16)
        if out and out[-1][1] == s and out[-1][2:] == [v["prot"], v["locked"]]:
            out[-1][1] = e
        else:
            out.append([s, e, v["prot"], v["locked"]])
    return [tuple(x) for x in out]


OPS: dict[str, tuple[str, Callable[[Machine], None], bool]] = {
    # name: (task, op, one VMA?)
    "fork": ("c", lambda m: m.fork("c", "x"), True),
    "fork-parent": ("p", lambda m: m.fork("p", "x"), True),
    "mprotect-middle": ("c", lambda m: m.mprotect("c", A + 8 * P, 2, "r"), True),
    "mprotect-merge-dup": ("p", lambda m: m.mprotect("p", A + 44 * P, 4, "rw"), True),
    "mprotect-span": ("c", lambda m: m.mprotect("c", A + 2 * P, 30, "r"), False),
    "mremap-move": ("g", lambda m: m.mremap("g", A + 8 * P, 4, 6, A + 80 * P), True),
    "mremap-move-back": ("p", lambda m: m.mremap("p", A + 20 * P, 4, 4, A + 16 * P), True),
    "mremap-grow": ("p", lambda m: m.mremap("p", A + 60 * P, 2, 4), True),
    "mremap-multi": ("c", lambda m: m.mremap("c", A, 40, 40, A + 100 * P), False),
    "munmap-middle": ("g", lambda m: m.munmap("g", A + 7 * P, 3), True),
    "munmap-span": ("c", lambda m: m.munmap("c", A + 2 * P, 20), False),
}


def count_allocs(scheme: str, op: Callable[[Machine], None]) -> int:
    m = setup(scheme)
    before = m.slab.calls
    with contextlib.suppress(SysError):  # a span over a hole: ENOMEM, after its allocations
        op(m)
    return m.slab.calls - before


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", sorted(OPS))
def test_every_allocation_failure_unwinds(scheme: str, name: str) -> None:
    task, op, one_vma = OPS[name]
    n = count_allocs(scheme, op)
    if n == 0 and scheme in ("anon_vma", "anonmm", "pte_chain"):
        pytest.skip(f"{name} allocates nothing that can fail under {scheme} (its VMA "
                    "links are embedded in the VMA, or it has none)")
    assert n > 0, f"{name} makes no failable allocation: the test would be empty"
    for k in range(1, n + 1):
        m = setup(scheme)
        snap0 = m.snapshot("before")
        raw0 = {t: m.raw_task(m.tasks[t]) for t in m.tasks}
        objs0 = m.objects()
        m.slab.fail_at = m.slab.calls + k
        try:
            op(m)
            failed = False
        except SysError as e:
            assert e.errno == "ENOMEM", f"{name}: allocation {k}/{n} gave {e.errno}"
            failed = True
        m.slab.fail_at = None
        m.check()
        snap1 = m.snapshot("after")
        if failed and name.startswith("fork"):
            assert "x" not in m.tasks
            assert snap1["tasks"] == snap0["tasks"], "a failed fork changed the parent"
            assert m.objects() == objs0, f"a failed fork leaked {objs0} -> {m.objects()}"
        elif failed and one_vma:
            t0, t1 = snap0["tasks"][task], snap1["tasks"][task]
            assert t1["pages"] == t0["pages"], f"{name}: pages changed on ENOMEM"
            assert coalesced(t1["vmas"]) == coalesced(t0["vmas"]), f"{name}: VMAs changed"
        for other in ("p", "c", "g"):
            if other != task:
                before, after = raw0[other], m.raw_task(m.tasks[other])
                if m.counters["early_cow"]:
                    # anonmm's early COW (docs/divergences.md) took shared pages
                    # off the moved range: only the others' mapcounts may drop
                    for rt in (before, after):
                        rt.pages = [(pg.addr, pg.state, pg.ident) for pg in rt.pages]
                assert after == before, f"{name}: allocation {k} failing changed task {other}"
        for t in list(m.tasks):
            m.exit(t)
        m.check()
        assert not any(m.objects().values()), f"{name}, failure {k}: leaked {m.objects()}"
