# SPDX-License-Identifier: GPL-2.0-only
"""Swap, swapoff and reclaim on the Machine API.

try_to_unuse in both versions (seed 004's of 2004 and b56a2d8af914's of
2019) brings every entry back, shares one frame among the holders of one
slot, keeps the data and leaves identical states (only the costs differ);
OOM comes only after reclaim fails; mlocked pages are never reclaimed;
MADV_FREE, MADV_WILLNEED and MADV_PAGEOUT follow Linux 6.18 (checked
against the running kernel, see TRACE_FORMAT.md); the model-only
``reclaim N`` op frees at most N pages.
"""

from __future__ import annotations

import json

import pytest

from rmaplab.consts import WINDOW_START
from rmaplab.errors import SysError
from rmaplab.machine import Config, Machine
from rmaplab.replay import ReplayOutput, replay, run_op
from rmaplab.swapfile import SwapArea
from rmaplab.trace import Op, parse_trace_lines

A = WINDOW_START
P = 4096


def area(m: Machine) -> SwapArea:
    assert m.swap is not None, "swap is off"
    return m.swap


def machine_of(out: ReplayOutput) -> Machine:
    assert out.machine is not None
    return out.machine


def pages_of(m: Machine, name: str) -> dict[int, dict]:
    snap = m.snapshot("s")
    return {int(a, 16): p for a, p in snap["tasks"][name]["pages"].items()}


def states(m: Machine, name: str) -> list[str]:
    return [p["state"] for _, p in sorted(pages_of(m, name).items())]


def fork_tree(unuse: str) -> tuple[Machine, dict[str, list[int]]]:
    """A parent with swapped pages in two VMAs, forked into a small tree
    whose members write some pages (COW from swap) and page them out, one
    reading a shared page back into the swap cache: shared slots, private
    slots, swap-cache pages and present pages all exist at swapoff."""
    m = Machine(Config(unuse=unuse))
    m.swapon(256)
    m.spawn("p")
    m.mmap("p", A, 16, "rw")
    m.mmap("p", A + 32 * P, 8, "rw")
    for j in range(16):
        m.write("p", A + j * P, 1, 10 + j)
    m.write("p", A + 32 * P, 8, 99)
    m.madvise("p", A, 16, "pageout")
    m.madvise("p", A + 32 * P, 4, "pageout")  # the other 4 stay present
    m.fork("p", "c1")
    m.fork("c1", "c2")
    m.fork("p", "c3")
    expect = {n: [10 + j for j in range(16)] + [99] * 8 for n in ("p", "c1", "c2", "c3")}
    for n, (lo, k, v) in {"c1": (0, 3, 201), "c2": (5, 2, 202), "c3": (12, 4, 203)}.items():
        m.write(n, A + lo * P, k, v)
        m.madvise(n, A + lo * P, k, "pageout")
        for j in range(lo, lo + k):
            expect[n][j] = v
    m.read("c2", A + 14 * P, 1, [])  # a shared slot's page now in the swap cache
    m.check()
    return m, expect


def written(*, pages: int, value: int, slots: int = 64) -> Machine:
    """A machine with swap on and task "a" that wrote `pages` pages at A."""
    m = Machine()
    m.swapon(slots)
    m.spawn("a")
    m.mmap("a", A, pages, "rw")
    m.write("a", A, pages, value)
    return m


def read_all(m: Machine, name: str) -> list[int]:
    return m.read(name, A, 16, []) + m.read(name, A + 32 * P, 8, [])


@pytest.mark.parametrize("unuse", ["2004", "2019"])
def test_swapoff_brings_everything_back(unuse: str) -> None:
    m, expect = fork_tree(unuse)
    # which tasks hold each slot before swapoff
    holders: dict[str, list[tuple[str, int]]] = {}
    for n in expect:
        for addr, p in pages_of(m, n).items():
            if p["state"] == "swap":
                holders.setdefault(p["frame"], []).append((n, addr))
    shared = [h for h in holders.values() if len(h) > 1]
    assert shared and any(len(h) == 1 for h in holders.values())
    m.swapoff()
    assert m.swap is None and m.mmlist == []
    snap = m.snapshot("after")
    mappers: dict[str, int] = {}
    for t in snap["tasks"].values():
        for p in t["pages"].values():
            mappers[p["frame"]] = mappers.get(p["frame"], 0) + 1
    for h in holders.values():
        # every holder of one slot maps one frame
        frames = {snap["tasks"][n]["pages"][hex(a)]["frame"] for n, a in h}
        assert len(frames) == 1
    for t in snap["tasks"].values():
        for p in t["pages"].values():
            assert p["mapcount"] == mappers[p["frame"]]
    # c2 read page 14 into the swap cache: p and c1 now map that very page
    page14 = {snap["tasks"][n]["pages"][hex(A + 14 * P)]["frame"] for n in ("p", "c1", "c2")}
    assert len(page14) == 1 and mappers[page14.pop()] == 3
    for n in expect:
        assert all(p["state"] == "present" for p in snap["tasks"][n]["pages"].values())
        assert m.tasks[n].mm.swapents == 0  # type: ignore[union-attr]
    m.check()
    for n, values in expect.items():
        assert read_all(m, n) == values
    assert m.counters["swapoff_mms"] >= 4 and m.counters["swapoff_ptes"] > 0


def test_both_unuse_versions_leave_the_same_state_at_different_costs() -> None:
    out = {}
    for unuse in ("2004", "2019"):
        m, _ = fork_tree(unuse)
        m.swapoff()
        out[unuse] = (m.snapshot("end"), m.counters["swapoff_mms"], m.counters["swapoff_ptes"])
    assert out["2004"][0] == out["2019"][0]
    # 2019 visits each of the 4 mms once and each anonymous PTE once
    assert out["2019"][1:] == (4, 4 * 24)
    # 2004 visits mms per slot: many more visits, and different PTE counts
    assert out["2004"][1] > 4 * 10
    assert out["2004"][1:] != out["2019"][1:]


def test_fan_of_forks_makes_2004_quadratic() -> None:
    """Private slots handed out in fork order, mmlist in the reverse order
    (each child right after the parent): each 2004 search goes most of the
    way round the list, so the PTE cost grows with N^2; 2019's with N."""
    cost = {}
    for unuse in ("2004", "2019"):
        for n in (10, 40):
            m = Machine(Config(unuse=unuse))
            m.swapon(512)
            m.spawn("p")
            m.mmap("p", A, 8, "rw")
            m.write("p", A, 8, 1)
            m.madvise("p", A, 8, "pageout")
            for i in range(n):
                m.fork("p", f"c{i}")
            for i in range(n):
                m.write(f"c{i}", A + (i % 8) * P, 1, 2)
                m.madvise(f"c{i}", A + (i % 8) * P, 1, "pageout")
            m.swapoff()
            cost[unuse, n] = m.counters["swapoff_ptes"]
    assert cost["2019", 40] == 41 * 8 and cost["2019", 10] == 11 * 8
    growth = cost["2004", 40] / cost["2004", 10]
    assert growth > 12  # 16 for N^2 (4x the processes), 4 for linear


# -- OOM only after reclaim ---------------------------------------------------------

def ops(*objs: dict) -> list:
    return parse_trace_lines(json.dumps(o) for o in objs)


def test_fault_reclaims_to_swap_instead_of_killing() -> None:
    m = Machine(Config(frames=32))
    m.swapon(128)
    m.spawn("a")
    m.mmap("a", A, 24, "rw")
    m.write("a", A, 24, 1)
    m.spawn("b")
    m.mmap("b", A, 24, "rw")
    res, _ = run_op(m, Op(line=1, op="write", task="b", addr=A, pages=24, value=2))
    assert res == {"line": 1, "op": "write", "ok": True}
    assert m.counters["oom_kill"] == 0 and m.counters["pswpout"] >= 16
    assert set(m.tasks) == {"a", "b"}
    m.check()
    assert m.read("a", A, 24, []) == [1] * 24  # a's swapped pages come back
    assert m.read("b", A, 24, []) == [2] * 24


def test_fault_kills_when_there_is_no_swap() -> None:
    trace = ops({"op": "spawn", "task": "a"},
                {"op": "mmap", "task": "a", "addr": A, "pages": 24, "prot": "rw"},
                {"op": "write", "task": "a", "addr": A, "pages": 24, "value": 1},
                {"op": "spawn", "task": "b"},
                {"op": "mmap", "task": "b", "addr": A, "pages": 12, "prot": "rw"},
                {"op": "write", "task": "b", "addr": A, "pages": 12, "value": 2},
                {"op": "read", "task": "a", "addr": A, "pages": 1})
    out = replay(trace, frames=32, check=True)
    # a (24 pages) is the largest: it dies, and b's write then completes
    assert out.results[5] == {"line": 6, "op": "write", "ok": True, "killed": "a"}
    assert out.results[6]["error"] == "ESRCH"
    assert machine_of(out).counters["pswpout"] == 0
    # the faulting task itself as the victim: the op fails with OOM
    trace = ops({"op": "spawn", "task": "a"},
                {"op": "mmap", "task": "a", "addr": A, "pages": 40, "prot": "rw"},
                {"op": "write", "task": "a", "addr": A, "pages": 40, "value": 1})
    out = replay(trace, frames=32, check=True)
    assert out.results[2] == {"line": 3, "op": "write", "ok": False, "error": "OOM",
                              "killed": "a"}
    assert machine_of(out).tasks == {}


def test_mlocked_pages_are_never_reclaimed() -> None:
    m = Machine(Config(frames=40))
    m.swapon(128)
    m.spawn("a")
    m.mmap("a", A, 16, "rw")
    m.write("a", A, 16, 3)
    m.mlock("a", A, 16)
    m.fork("a", "b")  # b maps the same pages, in a VMA that is not locked
    m.reclaim(100)
    assert states(m, "a") == ["present"] * 16 and states(m, "b") == ["present"] * 16
    assert area(m).inuse == 0
    with pytest.raises(SysError) as e:
        m.madvise("a", A, 16, "pageout")
    assert e.value.errno == "EINVAL"
    # memory pressure with only locked pages to take: the OOM killer, not reclaim
    m.exit("b")
    m.spawn("c")
    m.mmap("c", A, 30, "rw")
    m.write("c", A, 30, 4)
    assert states(m, "a") == ["present"] * 16
    m.check()


# -- madvise -----------------------------------------------------------------------

def test_free_discards_clean_pages_but_keeps_rewritten_ones() -> None:
    m = written(pages=8, value=5)
    m.madvise("a", A, 8, "free")
    m.write("a", A + 6 * P, 2, 6)  # written again after the free
    m.reclaim(100)
    pg = pages_of(m, "a")
    assert sorted(pg) == [A + 6 * P, A + 7 * P]  # the clean six are gone: empty PTEs
    assert m.counters["lazyfree_discard"] == 6
    assert area(m).inuse == 0 or all(p["state"] == "swap" for p in pg.values())
    assert m.read("a", A, 8, []) == [0] * 6 + [6, 6]
    m.check()


def test_pageout_discards_lazyfree_pages_without_a_slot() -> None:
    m = written(pages=4, value=5)
    m.madvise("a", A, 4, "free")
    m.madvise("a", A, 4, "pageout")
    assert pages_of(m, "a") == {} and area(m).inuse == 0 and m.counters["pswpout"] == 0


def test_free_of_a_shared_clean_page_then_cow_discards_it() -> None:
    """6.18 marks a clean page lazyfree even when another process maps it
    (found by kernel-diff, seed 58): once the other COWs away, pageout drops it."""
    m = written(pages=4, value=7)
    m.fork("a", "b")
    m.madvise("a", A, 4, "free")
    assert states(m, "a") == ["present"] * 4  # nothing dropped yet
    m.write("b", A, 2, 9)
    m.exit("b")
    m.madvise("a", A, 4, "pageout")
    assert pages_of(m, "a") == {}
    assert m.read("a", A, 4, []) == [0, 0, 0, 0]


def test_free_of_a_shared_page_another_process_mlocked_is_not_lazy() -> None:
    m = written(pages=4, value=7)
    m.fork("a", "b")
    m.mprotect("b", A, 4, "r")
    m.mlock("b", A, 4)  # read-only: b keeps mapping a's pages, now mlocked
    m.madvise("a", A, 4, "free")
    m.munlock("b", A, 4)
    m.exit("b")
    m.madvise("a", A, 4, "pageout")
    assert states(m, "a") == ["swap"] * 4
    assert m.read("a", A, 4, []) == [7] * 4


def test_free_of_a_shared_dirty_page_is_not_lazy() -> None:
    """Swapped in by a locked read fault, the page lost its swap copy and is
    PG_dirty (folio_free_swap): shared, MADV_FREE must leave it alone."""
    m = written(pages=4, value=7)
    m.madvise("a", A, 4, "pageout")
    m.mprotect("a", A, 4, "r")
    m.mlock("a", A, 4)
    m.munlock("a", A, 4)
    m.mprotect("a", A, 4, "rw")
    assert area(m).inuse == 0
    m.fork("a", "b")
    m.madvise("a", A, 4, "free")
    m.exit("b")
    m.madvise("a", A, 4, "pageout")
    assert states(m, "a") == ["swap"] * 4
    assert m.read("a", A, 4, []) == [7] * 4


def test_free_on_swap_entries_frees_the_slots() -> None:
    m = written(pages=4, value=7)
    m.madvise("a", A, 4, "pageout")
    assert area(m).inuse == 4
    m.madvise("a", A, 4, "free")
    assert pages_of(m, "a") == {} and area(m).inuse == 0
    assert m.read("a", A, 4, []) == [0] * 4


def test_unmapping_a_page_read_back_from_swap_frees_its_slot() -> None:
    """free_swap_cache on zap (checked on 6.18 with /proc/swaps' Used column,
    and in tests/traces/swap_cache_unmap.jsonl)."""
    m = written(pages=8, value=5)
    m.madvise("a", A, 8, "pageout")
    m.read("a", A, 8, [])
    assert area(m).inuse == 8  # in the swap cache, slots kept: swap not half full
    m.fork("a", "b")
    m.munmap("a", A, 4)
    assert area(m).inuse == 8  # b still maps all 8
    m.madvise("b", A, 8, "dontneed")
    assert area(m).inuse == 4  # the 4 a still maps keep theirs
    m.exit("a")
    assert area(m).inuse == 0
    m.check()


def test_reclaim_keeping_a_page_frees_its_slot_while_swap_is_over_half_full() -> None:
    """shrink_folio_list's activate_locked: a referenced swap-cache page is
    kept, and gives its slot back only while vm_swap_full() holds."""
    from rmaplab.mm_types import PTE_SHIFT
    from rmaplab.page_alloc import PG_SWAPCACHE
    from rmaplab.vmscan import shrink_page_list

    m = written(pages=12, value=5, slots=16)
    m.madvise("a", A, 4, "pageout")
    m.read("a", A, 4, [])  # back in, slots kept by the cache (4 of 16 used)
    m.madvise("a", A + 4 * P, 6, "pageout")
    assert area(m).inuse == 10 and area(m).full()
    pt = m.tasks["a"].mm.vmas[0].pt  # type: ignore[union-attr]
    frames = [int(x) >> PTE_SHIFT for x in pt[:4]]
    m.read("a", A, 4, [])  # referenced: reclaim keeps them
    assert shrink_page_list(m, frames, False) == 0
    # two slots go back; then 8 of 16 is not more than half, and the rest stay
    assert area(m).inuse == 8
    assert [bool(m.frames.flags[f] & PG_SWAPCACHE) for f in frames] == [False, False, True, True]
    assert m.read("a", A, 4, []) == [5] * 4
    m.check()


def test_with_no_free_slot_reclaim_scans_only_lazily_freed_pages() -> None:
    """get_scan_count: no swap slot to be had, no anon scanning (no pgscan,
    no rmap walk); MADV_FREE pages, on the kernel's file lists, still go."""
    m = Machine()
    m.spawn("a")
    m.mmap("a", A, 8, "rw")
    m.write("a", A, 8, 5)
    m.madvise("a", A + 4 * P, 4, "free")
    assert m.reclaim(8) == 4  # the four lazily freed pages, clean: discarded
    assert m.counters["pgscan"] == 4 and m.counters["lazyfree_discard"] == 4
    # page_referenced and try_to_unmap of those four only
    assert m.walks.as_dict()["count"] == 8
    assert m.read("a", A, 8, []) == [5] * 4 + [0] * 4
    # a full swap area is the same as none
    m2 = written(pages=8, value=5, slots=4)
    m2.madvise("a", A, 4, "pageout")
    scanned = m2.counters["pgscan"]
    assert m2.reclaim(8) == 0 and m2.counters["pgscan"] == scanned
    m2.check()


def test_willneed_reads_into_the_swap_cache_until_a_fault() -> None:
    m = written(pages=4, value=8)
    m.madvise("a", A, 4, "pageout")
    m.madvise("a", A, 4, "willneed")
    assert m.counters["pswpin"] == 4
    assert states(m, "a") == ["swap"] * 4  # still swap entries
    assert int(area(m).has_cache.sum()) == 4 and m.tasks["a"].mm.swapents == 4  # type: ignore[union-attr]
    m.check()
    assert m.read("a", A, 2, []) == [8, 8]
    assert m.counters["pswpin"] == 4  # the fault found the page in the cache
    assert states(m, "a") == ["present", "present", "swap", "swap"]
    m.check()


def test_pageout_leaves_pages_mapped_by_more_than_one_process_alone() -> None:
    m = written(pages=4, value=1)
    m.fork("a", "b")
    m.write("b", A, 1, 2)  # page 0 is b's own now, and a's own
    m.madvise("a", A, 4, "pageout")
    assert states(m, "a") == ["swap", "present", "present", "present"]
    assert states(m, "b") == ["present"] * 4
    assert pages_of(m, "b")[A + P]["mapcount"] == 2


def test_pageout_with_too_few_slots_goes_in_address_order() -> None:
    m = written(pages=8, value=1, slots=3)
    m.madvise("a", A + 2 * P, 6, "pageout")
    assert states(m, "a") == ["present"] * 2 + ["swap"] * 3 + ["present"] * 3
    slots = [p["frame"] for a, p in sorted(pages_of(m, "a").items()) if p["state"] == "swap"]
    assert slots == ["s1", "s2", "s3"]
    m.check()


def test_reclaim_op_frees_at_most_n_pages() -> None:
    trace = ops({"op": "swapon", "pages": 64},
                {"op": "spawn", "task": "a"},
                {"op": "mmap", "task": "a", "addr": A, "pages": 20, "prot": "rw"},
                {"op": "write", "task": "a", "addr": A, "pages": 20, "value": 1},
                {"op": "reclaim", "pages": 5},
                {"op": "snapshot", "label": "after"})
    assert trace[4].model_only
    out = replay(trace, check=True)
    assert out.results[4] == {"line": 5, "op": "reclaim", "ok": True}
    m = machine_of(out)
    assert m.counters["pgsteal"] == 5 and area(m).inuse == 5
    st = [p["state"] for p in out.snapshots[0]["tasks"]["a"]["pages"].values()]
    assert st.count("swap") == 5 and st.count("present") == 15
    assert m.reclaim(100) == 15  # then everything left
    assert m.reclaim(10) == 0
    m.check()
