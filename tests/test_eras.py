# SPDX-License-Identifier: GPL-2.0-only
"""Era mode (Config(era="historical"), docs/eras.md): each scheme on its
own kernel tree's rules, one hand-worked case per rule, and the default
era unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.contention.profiles import PROFILES
from rmaplab.eras import TODAY, TREES, rules_for, tree
from rmaplab.errors import SysError
from rmaplab.experiments import run_experiment
from rmaplab.gentrace import generate_trace
from rmaplab.kernel.diff import compare_runs
from rmaplab.machine import Config, Machine
from rmaplab.replay import replay
from rmaplab.show import ShowInputError, picture
from rmaplab.sweep_spec import SpecError, parse_spec, with_era
from rmaplab.trace import load_trace, parse_trace_lines

B = 0x100000000000
PG = 4096
TRACES = Path(__file__).resolve().parent / "traces"


def machine(scheme: str, era: str) -> Machine:
    return Machine(Config(scheme=scheme, era=era, check=True))


def vmas(m: Machine, task: str) -> list[dict]:
    return m.snapshot("x")["tasks"][task]["vmas"]


def fork_then_adjacent_mmap(scheme: str, era: str) -> Machine:
    """Parent writes 10 pages and forks; the child maps 10 more just above
    the inherited VMA and writes them."""
    m = machine(scheme, era)
    m.spawn("p")
    m.mmap("p", B, 10, "rw")
    m.write("p", B, 10, 1)
    m.fork("p", "c")
    m.mmap("c", B + 10 * PG, 10, "rw")
    m.write("c", B + 10 * PG, 10, 2)
    m.check()
    return m


# -- the table ------------------------------------------------------------------

def test_table_pins_every_scheme_to_one_tree() -> None:
    assert {s: t.kernel for s, t in TREES.items()} == {
        "pte_chain": "2.5.27", "anonmm": "2.6.6-rc3-mm2", "anon_vma": "2.6.9",
        "anon_vma_chain": "2.6.34", "modern": "6.18"}
    assert tree("pte_chain").ptes_per_node == 1
    assert rules_for("anon_vma", "today") is TODAY
    assert rules_for("modern", "historical") is TODAY
    with pytest.raises(ValueError, match="no kernel tree"):
        tree("nonesuch")
    with pytest.raises(TypeError):
        TREES["x"] = TREES["modern"]  # type: ignore[index]  # the table is read-only


def test_lock_profiles_name_the_table_trees() -> None:
    for scheme, prof in PROFILES.items():
        assert prof.kernel == TREES[scheme].kernel


def test_config_rejects_an_unknown_era() -> None:
    with pytest.raises(ValueError, match="unknown era 'x'; choose one of today, historical"):
        Config(era="x")


# -- rule 1: merges -------------------------------------------------------------------

def test_forked_child_adjacent_mmap_merges_under_2_6_9() -> None:
    """The acceptance case. 2.6.9's is_mergeable_anon_vma lets a range with
    no anon_vma join one with any: the child's new range extends its
    inherited VMA, and its pages go to the family's one anon_vma. 6.18
    refuses (the inherited VMA's chain is not singular): two VMAs, and the
    new one gets a second anon_vma."""
    hist = fork_then_adjacent_mmap("anon_vma", "historical")
    assert [(v["start"], v["end"]) for v in vmas(hist, "c")] == [(hex(B), hex(B + 20 * PG))]
    assert hist.stats("x")["objects"]["anon_vma"] == 1
    assert hist.stats("x")["objects"]["vma"] == 2
    today = fork_then_adjacent_mmap("anon_vma", "today")
    assert len(vmas(today, "c")) == 2
    assert today.stats("x")["objects"]["anon_vma"] == 2


def test_forked_child_adjacent_mmap_merges_under_2_6_34() -> None:
    """2.6.34 still had the either-is-NULL rule (the singular-chain test is
    Shaohua Li's of 2011): one VMA, and its new pages go to the child's own
    anon_vma: parent's + child's = 2 anon_vmas, 3 avcs (today: 3 and 4)."""
    hist = fork_then_adjacent_mmap("anon_vma_chain", "historical")
    assert len(vmas(hist, "c")) == 1
    assert hist.stats("x")["objects"]["anon_vma"] == 2
    assert hist.stats("x")["objects"]["anon_vma_chain"] == 3
    today = fork_then_adjacent_mmap("anon_vma_chain", "today")
    assert len(vmas(today, "c")) == 2
    assert today.stats("x")["objects"]["anon_vma"] == 3
    assert today.stats("x")["objects"]["anon_vma_chain"] == 4


@pytest.mark.parametrize("scheme", ["pte_chain", "anonmm"])
def test_forked_child_adjacent_mmap_merges_before_anon_vma(scheme: str) -> None:
    assert len(vmas(fork_then_adjacent_mmap(scheme, "historical"), "c")) == 1
    assert len(vmas(fork_then_adjacent_mmap(scheme, "today"), "c")) == 2


def two_faulted_neighbours(scheme: str, era: str) -> Machine:
    """The child makes its inherited VMA read-only, maps and writes a
    neighbour (flags differ: no merge; it needs an anon_vma of its own or a
    lent one), then makes the first writable again: mprotect's merge of two
    VMAs that both have anon_vmas."""
    m = machine(scheme, era)
    m.spawn("p")
    m.mmap("p", B, 10, "rw")
    m.write("p", B, 10, 1)
    m.fork("p", "c")
    m.mprotect("c", B, 10, "r")
    m.mmap("c", B + 10 * PG, 10, "rw")
    m.write("c", B + 10 * PG, 10, 2)
    m.mprotect("c", B, 10, "rw")
    m.check()
    return m


def test_2_6_9_lends_a_forked_neighbours_anon_vma_and_merges() -> None:
    """2.6.9's find_mergeable_anon_vma lends any neighbour's anon_vma (the
    singular-chain test is Linus Torvalds' commit d0e9fe1758f2, 2010): the
    neighbour joins the family's anon_vma, so the later mprotect finds the
    same anon_vma on both sides and merges. Today: a second anon_vma, and
    two VMAs."""
    hist = two_faulted_neighbours("anon_vma", "historical")
    assert len(vmas(hist, "c")) == 1
    assert hist.stats("x")["objects"]["anon_vma"] == 1
    today = two_faulted_neighbours("anon_vma", "today")
    assert len(vmas(today, "c")) == 2
    assert today.stats("x")["objects"]["anon_vma"] == 2


def test_2_6_34_keeps_two_anon_vmas_apart() -> None:
    """2.6.34 lends no forked VMA's anon_vma, and two different anon_vmas
    never merge: two VMAs, as today."""
    assert len(vmas(two_faulted_neighbours("anon_vma_chain", "historical"), "c")) == 2


@pytest.mark.parametrize("scheme", ["pte_chain", "anonmm"])
def test_no_anon_vma_test_before_anon_vma(scheme: str) -> None:
    """Before anon_vma (2.6.7), anonymous VMAs with equal flags merged
    whatever pages they held: one VMA; today two."""
    assert len(vmas(two_faulted_neighbours(scheme, "historical"), "c")) == 1
    assert len(vmas(two_faulted_neighbours(scheme, "today"), "c")) == 2


@pytest.mark.parametrize("scheme", ["pte_chain", "anonmm"])
def test_no_offset_test_before_anon_vma(scheme: str) -> None:
    """The kernels before anon_vma merged anonymous VMAs without comparing
    offsets (can_vma_merge_after's early return for a mapping with no file):
    a VMA mremap moves next to another merges with it although its pgoff
    is not linear; 6.18 (and 2.6.9) keep two. The pages are still found:
    they go to swap, come back, and a fork shares them, under the checker."""
    def run(era: str) -> Machine:
        m = machine(scheme, era)
        m.swapon(64)
        m.spawn("p")
        m.mmap("p", B, 4, "rw")
        m.write("p", B, 4, 1)
        m.mmap("p", B + 10 * PG, 4, "rw")
        m.write("p", B + 10 * PG, 4, 2)
        m.mremap("p", B + 10 * PG, 4, 4, B + 4 * PG)
        m.check()
        return m
    hist = run("historical")
    assert len(vmas(hist, "p")) == 1
    assert len(vmas(run("today"), "p")) == 2
    assert hist.reclaim(8) == 8
    hist.fork("p", "c")
    assert hist.read("c", B, 8, []) == [1] * 4 + [2] * 4
    hist.write("p", B + 4 * PG, 4, 3)
    assert hist.read("c", B + 4 * PG, 4, []) == [2] * 4
    hist.check()


def test_replay_era_historical_on_the_command_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    ops = [{"op": "spawn", "task": "p"},
           {"op": "mmap", "task": "p", "addr": hex(B), "pages": 10, "prot": "rw"},
           {"op": "write", "task": "p", "addr": hex(B), "pages": 10, "value": 1},
           {"op": "fork", "task": "p", "child": "c"},
           {"op": "mmap", "task": "c", "addr": hex(B + 10 * PG), "pages": 10, "prot": "rw"},
           {"op": "snapshot", "label": "after"}]
    trace.write_text("".join(json.dumps(o) + "\n" for o in ops))
    counts = {}
    for era in ("today", "historical"):
        snaps = tmp_path / f"s-{era}.jsonl"
        out = CliRunner().invoke(main, ["replay", str(trace), "--scheme", "anon_vma", "--check",
                                        "--era", era, "--results", str(tmp_path / "r.jsonl"),
                                        "--snapshots", str(snaps)])
        assert out.exit_code == 0, out.output
        snap = json.loads(snaps.read_text().splitlines()[0])
        counts[era] = len(snap["tasks"]["c"]["vmas"])
    assert counts == {"today": 2, "historical": 1}
    bad = CliRunner().invoke(main, ["replay", str(trace), "--era", "1990", "--results", "-",
                                    "--snapshots", "-"])
    assert bad.exit_code == 2 and "--era" in bad.output


# -- rule 2: COW reuse ------------------------------------------------------------------

def swapped_back_shared(scheme: str, era: str) -> Machine:
    """A page parent and child shared goes to swap; the child exits; the
    parent reads it back (mapped once, in the swap cache, not exclusive:
    the swap PTEs were copies), then writes it."""
    m = machine(scheme, era)
    m.swapon(64)
    m.spawn("p")
    m.mmap("p", B, 1, "rw")
    m.write("p", B, 1, 5)
    m.fork("p", "c")
    assert m.reclaim(1) == 1
    m.exit("c")
    assert m.read("p", B, 1, []) == [5]
    assert m.swap is not None and m.swap.inuse == 1
    m.write("p", B, 1, 6)
    m.check()
    return m


def test_cow_reuse_2_6_9_keeps_the_swap_cache() -> None:
    """can_share_swap_page (2.6.9): page_count 2, the other reference the
    swap cache, no swap PTE on the slot: reused, and it stays in the swap
    cache (its slot still in use). 6.18 frees the slot to reuse it."""
    hist = swapped_back_shared("anon_vma", "historical")
    assert hist.counters["cow_reuse"] == 1 and hist.counters["cow"] == 0
    assert hist.swap is not None and hist.swap.inuse == 1
    today = swapped_back_shared("anon_vma", "today")
    assert today.counters["cow_reuse"] == 1
    assert today.swap is not None and today.swap.inuse == 0


def exclusive_swapped_back(scheme: str, era: str) -> Machine:
    """A page mapped once goes to swap and is read back (exclusive), then written."""
    m = machine(scheme, era)
    m.swapon(64)
    m.spawn("p")
    m.mmap("p", B, 1, "rw")
    m.write("p", B, 1, 5)
    assert m.reclaim(1) == 1
    assert m.read("p", B, 1, []) == [5]
    m.write("p", B, 1, 6)
    m.check()
    return m


def test_cow_reuse_2_6_34_frees_the_swap_cache() -> None:
    """reuse_swap_page (2.6.34): mapcount 1 and no swap PTE on the slot:
    reused, and the page leaves the swap cache. 6.18 reuses an exclusive
    page on PG_anon_exclusive alone and keeps its slot."""
    hist = exclusive_swapped_back("anon_vma_chain", "historical")
    assert hist.counters["cow_reuse"] == 1
    assert hist.swap is not None and hist.swap.inuse == 0
    today = exclusive_swapped_back("anon_vma_chain", "today")
    assert today.counters["cow_reuse"] == 1
    assert today.swap is not None and today.swap.inuse == 1


# -- rule 3: mlock ------------------------------------------------------------------------

def mlocked_under_reclaim(scheme: str, era: str, slots: int = 64) -> Machine:
    m = machine(scheme, era)
    m.swapon(slots)
    m.spawn("p")
    m.mmap("p", B, 3, "rw")
    m.write("p", B, 3, 1)
    m.mlock("p", B, 3)
    assert m.reclaim(3) == 0
    m.check()
    return m


def test_mlocked_pages_met_by_reclaim_before_2_6_28() -> None:
    """Before the unevictable list (2.6.28), reclaim scanned mlocked pages:
    each got a swap slot, and try_to_unmap failed on VM_LOCKED (SWAP_FAIL),
    so it went back to the active list: 3 pages scanned twice (two passes)
    in 2.6.9, with 3 rmap walks each pass; 6.18 scans none."""
    hist = mlocked_under_reclaim("anon_vma", "historical")
    assert hist.counters["pgscan"] == 6
    assert hist.walks.count > 0
    assert hist.swap is not None and hist.swap.inuse == 3
    today = mlocked_under_reclaim("anon_vma", "today")
    assert today.counters["pgscan"] == 0 and today.walks.count == 0
    assert today.swap is not None and today.swap.inuse == 0
    # 2.6.34 had the unevictable list
    assert mlocked_under_reclaim("anon_vma_chain", "historical").counters["pgscan"] == 0


def test_munlock_leaves_the_split_before_mlock_merged() -> None:
    """2.6.9's mlock_fixup only split (its find_mergeable_anon_vma says
    neither mlock nor madvise remerges): mlock of the middle 4 of 10 pages
    gives 3 VMAs in every tree, and munlock leaves them 3 in 2.6.9, where
    2.6.34 and 6.18 merge them back into 1."""
    def run(scheme: str, era: str) -> tuple[int, int]:
        m = machine(scheme, era)
        m.spawn("p")
        m.mmap("p", B, 10, "rw")
        m.write("p", B, 10, 1)
        m.mlock("p", B + 3 * PG, 4)
        locked = len(vmas(m, "p"))
        m.munlock("p", B + 3 * PG, 4)
        m.check()
        return locked, len(vmas(m, "p"))
    assert run("anon_vma", "historical") == (3, 3)
    assert run("pte_chain", "historical") == (3, 3)
    assert run("anon_vma", "today") == (3, 1)
    assert run("anon_vma_chain", "historical") == (3, 1)


# -- rule 4: reclaim ---------------------------------------------------------------------

def test_activation_keeps_the_slot_before_2_6_28() -> None:
    """With swap more than half full, 6.18's activate_locked gives a kept
    page's slot back (Rik van Riel's "free swap space on swap-in/activation",
    2.6.28); 2.6.9 kept it. 3 mlocked pages, 4 slots: all 3 keep theirs."""
    hist = mlocked_under_reclaim("anon_vma", "historical", slots=4)
    assert hist.swap is not None and hist.swap.inuse == 3


def test_write_swapin_keeps_the_slot_in_2_6_9() -> None:
    """A write fault on a swapped-out page nobody else holds: 2.6.34's
    reuse_swap_page and 6.18's should_try_to_free_swap free its slot;
    2.6.9's can_share_swap_page does not."""
    def run(scheme: str, era: str) -> int:
        m = machine(scheme, era)
        m.swapon(64)
        m.spawn("p")
        m.mmap("p", B, 1, "rw")
        m.write("p", B, 1, 5)
        assert m.reclaim(1) == 1
        m.write("p", B, 1, 6)
        m.check()
        assert m.swap is not None
        return m.swap.inuse
    assert run("anon_vma", "historical") == 1
    assert run("anon_vma", "today") == 0
    assert run("anon_vma_chain", "historical") == 0


# -- rule 5: the importer path and ENOMEM -------------------------------------------------

def importer_mprotect(scheme: str, era: str, fail_next: bool) -> str:
    """A written VMA made read-only, an unfaulted writable one just below;
    mprotect makes the upper one writable again, and the lower one absorbs
    it: the lower one must take (import) its anon_vma. With the next
    failable allocation made to fail: "ENOMEM" or "ok"."""
    m = machine(scheme, era)
    m.spawn("p")
    m.mmap("p", B + 4 * PG, 4, "rw")
    m.write("p", B + 4 * PG, 4, 1)
    m.mprotect("p", B + 4 * PG, 4, "r")
    m.mmap("p", B, 4, "rw")
    assert len(vmas(m, "p")) == 2
    if fail_next:
        m.slab.fail_at = m.slab.calls + 1
    try:
        m.mprotect("p", B + 4 * PG, 4, "rw")
    except SysError as e:
        assert e.errno == "ENOMEM"
        return "ENOMEM"
    finally:
        m.slab.fail_at = None
        m.check()
    assert len(vmas(m, "p")) == 1
    return "ok"


@pytest.mark.parametrize("era", ["today", "historical"])
def test_importer_fails_only_where_its_kernel_allocated(era: str) -> None:
    """2.6.9's vma_adjust gave the importer the anon_vma and linked it onto
    the family's list, allocating nothing: it cannot fail. 2.6.34's
    vma_adjust and 6.18's dup_anon_vma clone the chain (anon_vma_clone)
    and fail with ENOMEM when a chain entry cannot be allocated. The
    schemes already do this in both eras."""
    assert importer_mprotect("anon_vma", era, True) == "ok"
    assert importer_mprotect("anon_vma_chain", era, True) == "ENOMEM"
    assert importer_mprotect("anon_vma_chain", era, False) == "ok"


# -- the default era is unchanged --------------------------------------------------------

@pytest.mark.parametrize("name", ["fork_cow", "faults", "advice"])
def test_default_era_matches_the_recorded_kernel(name: str) -> None:
    path = TRACES / f"{name}.jsonl"
    ops = load_trace(path)
    kres = [json.loads(x) for x in path.with_name(name + ".results.jsonl").read_text().splitlines()
            if x.strip()]
    ksnap = [json.loads(x) for x in
             path.with_name(name + ".snapshots.jsonl").read_text().splitlines() if x.strip()]
    for scheme in TREES:
        plain = replay(ops, scheme=scheme, check=True)
        today = replay(ops, scheme=scheme, check=True, era="today")
        assert today.results == plain.results and today.snapshots == plain.snapshots
        assert today.stats == plain.stats
        assert not compare_runs(ops, plain.results, plain.snapshots, kres, ksnap)
        replay(ops, scheme=scheme, check=True, era="historical")  # runs clean under the checker


# -- --era on the verbs that run the model -----------------------------------------------

def test_experiment_era_historical(tmp_path: Path) -> None:
    """aim7 in era mode: anon_vma's children's COW pages stay in the one
    family anon_vma either way; each record says its era."""
    res = run_experiment("aim7", schemes=["anon_vma", "anon_vma_chain"],
                         params={"procs": [3], "pages": [20], "cow": [1.0]}, progress=False,
                         era="historical")
    assert [r["era"] for r in res] == ["historical", "historical"]
    today = run_experiment("aim7", schemes=["anon_vma"], params={"procs": [3], "pages": [20]},
                           progress=False)
    assert "era" not in today[0]
    out = CliRunner().invoke(main, ["experiment", "contention", "--era", "historical", "--out",
                                    str(tmp_path), "-q"])
    assert out.exit_code == 2 and "does not run in era mode" in out.output
    out = CliRunner().invoke(main, ["experiment", "hierarchy", "--era", "historical",
                                    "--param", "generations=2", "--out", str(tmp_path), "-q"])
    assert out.exit_code == 0, out.output


def test_show_era_historical(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    ops = [{"op": "spawn", "task": "p"},
           {"op": "mmap", "task": "p", "addr": hex(B), "pages": 2, "prot": "rw"},
           {"op": "write", "task": "p", "addr": hex(B), "pages": 2, "value": 1},
           {"op": "fork", "task": "p", "child": "c"},
           {"op": "mmap", "task": "c", "addr": hex(B + 2 * PG), "pages": 2, "prot": "rw"}]
    trace.write_text("".join(json.dumps(o) + "\n" for o in ops))
    dot = picture(trace, at=5, scheme="anon_vma", era="historical").to_dot()
    assert "era historical" in dot
    with pytest.raises(ShowInputError, match="--era"):
        picture(trace, at=5, era="1990")
    out = CliRunner().invoke(main, ["show", str(trace), "--at", "5", "--scheme", "anon_vma",
                                    "--era", "historical", "--format", "dot", "-o",
                                    str(tmp_path / "x.dot"), "-q"])
    assert out.exit_code == 0, out.output


def test_sweep_spec_era() -> None:
    base = {"experiment": "aim7", "schemes": ["anon_vma"], "params": {"procs": 2, "pages": 5}}
    today = parse_spec(base)
    hist = parse_spec({**base, "era": "historical"})
    assert today.hash != hist.hash
    assert "era" not in today.points()[0].params
    assert hist.points()[0].params["era"] == "historical"
    assert with_era(today, "historical").hash == hist.hash
    with pytest.raises(SpecError, match="key 'era'"):
        parse_spec({**base, "era": "1990"})
    with pytest.raises(SpecError, match="does not run in era mode"):
        parse_spec({"experiment": "contention", "era": "historical"})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_historical_era_keeps_every_invariant(seed: int) -> None:
    """Random traces (fork, exit, mmap, mprotect, mremap, mlock, swap,
    reclaim, madvise) in era mode under every pinned scheme, with the
    invariant checker after every op."""
    ops = parse_trace_lines(generate_trace(seed, 300))
    for scheme in TREES:
        replay(ops, scheme=scheme, check=True, era="historical")
