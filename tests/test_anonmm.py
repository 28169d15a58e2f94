# SPDX-License-Identifier: GPL-2.0-only
"""Scheme anonmm (seed 000): bundles and their lifetime, the walk order, the
trylocks, and the one user-visible difference a historical scheme has
(docs/divergences.md, "anonmm copies pages that mremap moves away from a
sharing mm"): pinned here against ``modern`` on the same traces."""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START as A
from rmaplab.errors import ModelBug, SysError
from rmaplab.machine import Config, Machine
from rmaplab.replay import replay
from rmaplab.rmap.core import page_referenced
from rmaplab.trace import parse_trace_lines

P = 4096
B = A + 0x100000  # where the child moves its pages


def frame_at(m: Machine, task: str, addr: int) -> int:
    vma = m.tasks[task].mm.vma_lookup(addr >> 12)
    return int(vma.pt[(addr >> 12) - vma.start]) >> 8


def run(lines: list[str], scheme: str):
    return replay(parse_trace_lines(lines), scheme=scheme, check=True)


def strip(snapshot: dict) -> dict:
    """A snapshot without frame identities and mapcounts."""
    return {t: {"vmas": v["vmas"], "pages": {a: p["state"] for a, p in v["pages"].items()}}
            for t, v in snapshot["tasks"].items()}


def op(o: str, **kw) -> str:
    import json
    for k in ("addr", "new_addr"):
        if k in kw:
            kw[k] = hex(kw[k])
    return json.dumps({"op": o, **kw})


SHARED = [op("spawn", task="a"), op("mmap", task="a", addr=A, pages=2, prot="rw"),
          op("write", task="a", addr=A, pages=2, value=5), op("fork", task="a", child="b")]


# -- the bundle ---------------------------------------------------------------------

def test_bundle_lifetime() -> None:
    m = Machine(Config(scheme="anonmm", frames=100))
    m.spawn("p")
    hd = m.tasks["p"].mm.anonmm
    assert hd.head is hd and hd.count == 2  # ref by mm and head
    m.mmap("p", A, 4, "rw")
    m.write("p", A, 4, 1)
    assert hd.count == 6  # and one per page
    m.fork("p", "c")
    am = m.tasks["c"].mm.anonmm
    assert am.head is hd and list(hd.members) == [hd, am] and am.count == 1
    m.spawn("q")  # exec: a bundle of its own
    assert m.tasks["q"].mm.anonmm.head is not hd
    m.exit("p")
    assert m.objects()["anonmm"] == 3  # p's anonmm stays: the shared pages point at it
    m.check()
    m.exit("c")
    m.exit("q")
    m.check()
    assert not any(m.objects().values())


def test_walk_tries_the_indicated_mm_first_then_the_rest_of_the_list() -> None:
    m = Machine(Config(scheme="anonmm", frames=100))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.write("p", A, 2, 1)
    for c in ("c0", "c1", "c2"):
        m.fork("p", c)
    m.write("c1", A, 1, 2)  # c1's page: c1 is indicated, found at once
    page_referenced(m, frame_at(m, "c1", A))
    assert m.walks.as_dict() == {"count": 1, "anon_vmas": 1, "vmas": 1, "ptes": 1, "listed": 4}
    assert m.counters["trylock"] == 1  # page_referenced_one trylocks (seed 000's failed)
    m.fork("c1", "g")  # g is last on the list: the walk from c1 goes c1, c2, g
    page_referenced(m, frame_at(m, "c1", A))
    st = m.walks.as_dict()
    assert (st["vmas"], st["ptes"], st["listed"]) == (1 + 3, 1 + 3, 4 + 5)
    m.check()


def test_mms_without_rss_are_examined_but_not_looked_into() -> None:
    m = Machine(Config(scheme="anonmm", frames=100))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.write("p", A, 2, 1)
    m.fork("p", "c0")
    m.munmap("c0", A, 2)  # c0 has no rss
    m.fork("p", "c1")
    m.write("p", A, 1, 2)  # p's new page; the old one is c1's alone, indicated p
    f = frame_at(m, "c1", A)
    page_referenced(m, f)
    st = m.walks.as_dict()
    assert (st["vmas"], st["ptes"], st["listed"]) == (3, 2, 3)  # p, c0 (skipped), c1
    assert m.counters["trylock"] == 2


# -- the divergence (docs/divergences.md) -------------------------------------------

def test_mremap_copies_a_page_shared_with_another_mm() -> None:
    trace = SHARED + [op("mremap", task="b", addr=A, pages=2, new_pages=2, new_addr=B),
                      op("snapshot", label="moved"),
                      op("read", task="a", addr=A, pages=2), op("read", task="b", addr=B, pages=2),
                      op("write", task="b", addr=B, pages=1, value=9),
                      op("read", task="a", addr=A, pages=1), op("snapshot", label="end")]
    modern, anonmm = run(trace, "modern"), run(trace, "anonmm")
    assert anonmm.results == modern.results  # what the program sees is the same
    for s0, s1 in zip(modern.snapshots, anonmm.snapshots):
        assert strip(s0) == strip(s1)
    moved0, moved1 = modern.snapshots[0]["tasks"], anonmm.snapshots[0]["tasks"]
    assert moved0["b"]["pages"][hex(B)] == {"state": "present", "frame": "f1", "mapcount": 2}
    assert moved1["a"]["pages"][hex(A)] == {"state": "present", "frame": "f1", "mapcount": 1}
    assert moved1["b"]["pages"][hex(B)] == {"state": "present", "frame": "f3", "mapcount": 1}
    m = anonmm.machine
    assert m.counters["early_cow"] == 2 and m.rmap.copies_asked > 0
    assert modern.machine.counters["early_cow"] == 0
    # the copy is exclusive: b's write reuses it where modern copies on write
    assert modern.machine.counters["cow"] == 1 and m.counters["cow"] == 0


def test_mremap_moves_an_unshared_page_without_copying() -> None:
    trace = SHARED + [op("write", task="b", addr=A, pages=2, value=6),
                      op("mremap", task="b", addr=A, pages=2, new_pages=2, new_addr=B),
                      op("snapshot", label="moved")]
    modern, anonmm = run(trace, "modern"), run(trace, "anonmm")
    assert anonmm.snapshots == modern.snapshots
    assert anonmm.machine.counters["early_cow"] == 0


SWAPPED = SHARED + [op("swapon", pages=16), op("reclaim", pages=4),
                    op("snapshot", label="swapped"),
                    op("mremap", task="b", addr=A, pages=2, new_pages=2, new_addr=B)]


def test_swapped_pages_move_then_swap_in_at_another_address_is_a_copy() -> None:
    trace = SWAPPED + [op("read", task="a", addr=A, pages=2), op("read", task="b", addr=B, pages=2),
                       op("snapshot", label="in")]
    modern, anonmm = run(trace, "modern"), run(trace, "anonmm")
    swapped = modern.snapshots[0]["tasks"]
    assert {p["state"] for t in swapped.values() for p in t["pages"].values()} == {"swap"}
    assert anonmm.results == modern.results
    assert [strip(s) for s in anonmm.snapshots] == [strip(s) for s in modern.snapshots]
    in0, in1 = modern.snapshots[-1]["tasks"], anonmm.snapshots[-1]["tasks"]
    assert in0["b"]["pages"][hex(B)]["mapcount"] == 2  # the same frame as a's
    assert in1["b"]["pages"][hex(B)]["mapcount"] == 1  # a copy
    assert in1["a"]["pages"][hex(A)]["frame"] != in1["b"]["pages"][hex(B)]["frame"]
    assert anonmm.machine.counters["early_cow"] == 2


def test_swapoff_at_another_address_is_a_copy() -> None:
    trace = SWAPPED + [op("read", task="a", addr=A, pages=1), op("swapoff"),
                       op("snapshot", label="off"),
                       op("read", task="a", addr=A, pages=2), op("read", task="b", addr=B, pages=2)]
    modern, anonmm = run(trace, "modern"), run(trace, "anonmm")
    assert anonmm.results == modern.results
    assert [strip(s) for s in anonmm.snapshots] == [strip(s) for s in modern.snapshots]
    off0, off1 = modern.snapshots[-1]["tasks"], anonmm.snapshots[-1]["tasks"]
    assert off0["b"]["pages"][hex(B)]["mapcount"] == 2
    assert off1["b"]["pages"][hex(B)]["mapcount"] == 1
    assert anonmm.machine.counters["early_cow"] >= 1


def test_mremap_fails_with_enomem_when_no_frame_is_left_for_the_copy() -> None:
    def build(scheme: str) -> Machine:
        m = Machine(Config(scheme=scheme, frames=4))
        m.spawn("a")
        m.mmap("a", A, 4, "rw")
        m.write("a", A, 4, 1)
        m.fork("a", "b")
        return m

    modern = build("modern")
    modern.mremap("b", A, 2, 2, B)
    m = build("anonmm")
    with pytest.raises(SysError) as e:
        m.mremap("b", A, 2, 2, B)
    assert e.value.errno == "ENOMEM"
    assert [v.start << 12 for v in m.tasks["b"].mm.vmas] == [A]  # nothing moved
    m.check()


def test_checker_catches_a_page_at_the_wrong_address() -> None:
    m = Machine(Config(scheme="anonmm", frames=100))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.write("p", A, 2, 1)
    m.frames.index[frame_at(m, "p", A)] += 1  # page->index is the address
    with pytest.raises(ModelBug, match="misses"):
        m.check()
