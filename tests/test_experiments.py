# SPDX-License-Identifier: GPL-2.0-only
"""Experiments run end to end on tiny grids: records, table, files, claims."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.experiments import experiments, run_experiment, write_outputs


def test_aim7_shows_the_o_n_to_2_shape(tmp_path: Path) -> None:
    exp = experiments()["aim7"]
    recs = run_experiment(exp, schemes=["modern", "anon_vma_chain"],
                          params=["procs=4,16", "pages=32", "cow=1"], progress=False)
    assert len(recs) == 4
    for r in recs:
        n = r["procs"]
        # (2N+1)/(N+1) listed, one visited: Rik van Riel's "O(N) to 2"
        assert abs(r["listed_avg"] - (2 * n + 1) / (n + 1)) < 1e-9
        assert r["visited_avg"] == 1.0
        assert r["anon_vmas"] == n + 1 and r["avcs"] == 2 * n + 1
    files = write_outputs(exp, recs, tmp_path)
    names = {f.name for f in files}
    assert {"aim7.csv", "aim7.parquet", "aim7-listed_avg.png", "aim7-listed_avg.svg"} <= names
    assert all(f.stat().st_size > 0 for f in files)


def test_aim7_pte_chain_exit_cost_grows_as_n_per_page() -> None:
    """The children exit oldest first, each at its pages' chain's tail end
    (the parent behind it): N, N-1, ... 1 nodes per page, the parent 1."""
    exp = experiments()["aim7"]
    recs = run_experiment(exp, schemes=["pte_chain", "anon_vma_chain", "anonmm"],
                          params=["procs=4,16,64", "pages=8", "cow=0,1"], progress=False)
    by = {(r["scheme"], r["procs"], r["cow"]): r for r in recs}
    for n in (4, 16, 64):
        shared = by["pte_chain", n, 0.0]
        assert shared["exit_cost_page"] == (n * (n + 1) / 2 + 1) / (n + 1)
        assert shared["fork_cost"] == 8  # one node per PTE copied: pushed at the head
        cowed = by["pte_chain", n, 1.0]
        assert cowed["exit_cost_page"] == 1  # every page private by then: direct
        assert cowed["cow_cost"] == (n + 1) / 2 + 1  # the old page's search, the new's add
        assert cowed["pte_chain_alloc"] == cowed["pte_chain_free"] == 8 * (n + 1)
        # the object-based schemes' upkeep does not depend on N or the pages
        assert by["anon_vma_chain", n, 0.0]["fork_cost"] == 4  # 2 avcs + 2 anon_vmas
        assert by["anonmm", n, 0.0]["fork_cost"] == 2
    assert by["pte_chain", 64, 0.0]["exit_cost_page"] > 8 * by["pte_chain", 4, 0.0][
        "exit_cost_page"]


def test_hierarchy_is_bounded_only_with_reuse() -> None:
    exp = experiments()["hierarchy"]
    recs = run_experiment(exp, params=["generations=5,50", "vmas=2"], progress=False)
    by = {(r["scheme"], r["generations"]): r for r in recs}
    assert by["anon_vma_chain", 50]["anon_vmas"] == 2 * 51
    assert by["modern", 50]["anon_vmas"] == by["modern", 5]["anon_vmas"] <= 3 * 2


def test_cli_experiment_writes_table_and_plot(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["experiment", "aim7", "--schemes", "modern", "--param",
                                    "procs=2,3", "--param", "pages=8", "--out", str(tmp_path),
                                    "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "docs/references.md#aim7-anon-vma-chain" in out.output and "listed" in out.output
    assert (tmp_path / "aim7-listed_avg.png").exists()


def test_cli_experiment_rejects_bad_param(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["experiment", "aim7", "--param", "procs=x",
                                    "--out", str(tmp_path)])
    assert out.exit_code == 2
    assert "procs" in out.output and "Traceback" not in out.output


def test_kbuild_ratio_and_singletons() -> None:
    exp = experiments()["kbuild"]
    recs = run_experiment(exp, schemes=["modern"], params=["jobs=1,4", "units=8", "libs=2",
                                                           "heap_pages=32"], progress=False)
    for r in recs:
        assert 0.05 < r["avc_to_vma_bytes"] < 1.0
        assert 0.0 < r["singleton_share"] <= 1.0
        assert r["rmap_bytes_peak"] >= r["rmap_bytes_avg"] > 0


def test_kbuild_counts_rmap_upkeep_per_scheme() -> None:
    exp = experiments()["kbuild"]
    recs = run_experiment(exp, schemes=["pte_chain", "anon_vma", "anonmm"],
                          params=["jobs=2", "units=4", "libs=1", "heap_pages=8"],
                          progress=False)
    by = {r["scheme"]: r for r in recs}
    chain = by["pte_chain"]
    # every mapping added is removed again by the end; nodes made are freed
    assert chain["rmap_add_nodes"] > 0 and chain["rmap_remove_nodes"] >= chain["rmap_add_nodes"]
    assert chain["pte_chain_alloc"] > 0 and chain["rmap_fork_objs"] == 0
    for s in ("anon_vma", "anonmm"):
        assert by[s]["rmap_fork_objs"] > 0 and by[s]["rmap_exit_objs"] > 0
        assert by[s]["rmap_add_nodes"] == by[s]["pte_chain_alloc"] == 0


def test_allocator_tradeoff() -> None:
    exp = experiments()["allocator"]
    recs = run_experiment(exp, params=["pressure=none,high", "arenas=2", "spans=8", "rounds=4"],
                          progress=False)
    by = {(r["advice"], r["pressure"]): r for r in recs}
    assert by["dontneed", "none"]["reuse_faults"] > 0 and by["dontneed", "none"]["zero_filled"] > 0
    for adv in ("volatile", "free"):
        assert by[adv, "none"]["reuse_faults"] == 0 and by[adv, "none"]["zero_filled"] == 0
        assert by[adv, "high"]["discarded"] > 0
    assert by["volatile", "none"]["vma_split"] > 0 and by["free", "none"]["vma_split"] == 0
    assert by["volatile", "none"]["mmap_sem_write"] > 0 == by["dontneed", "none"]["mmap_sem_write"]
    assert by["volatile", "none"]["madvise_ptes"] == 0 < by["free", "none"]["madvise_ptes"]


def test_swapoff_2004_is_quadratic_2019_linear() -> None:
    exp = experiments()["swapoff"]
    recs = run_experiment(exp, params=["procs=10,40", "pages=16", "writes=2"], progress=False)
    by = {(r["unuse"], r["procs"]): r for r in recs}
    grow04 = by["2004", 40]["ptes"] / by["2004", 10]["ptes"]
    grow19 = by["2019", 40]["ptes"] / by["2019", 10]["ptes"]
    assert grow19 < 5 < 10 < grow04  # 4x the processes: ~4x vs ~16x
    assert by["2004", 40]["slots"] == by["2019", 40]["slots"]


@pytest.mark.parametrize("name,param,says", [
    ("aim7", "procs=-5", "procs=-5 is out of range: 1 to 1,000,000"),
    ("aim7", "procs=100000", "needs 100,001,000 pages"),
    ("race", "pages=6", "a multiple of 4"),
    ("swapoff", "shape=ring", "choose from chain, fan, tree"),
    ("allocator", "advice=bogus", "choose from dontneed, volatile, free"),
    ("kbuild", "heap_pages=1024", "out of range: 1 to 1,023"),
])
def test_impossible_points_are_refused_before_anything_runs(tmp_path: Path, name: str,
                                                            param: str, says: str) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["experiment", name, "--param", param, "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_out_is_refused_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["experiment", "race", "--out", str(blocker / "sub"),
                                    "--no-progress"])
    assert res.exit_code == 2 and "--out" in res.output, res.output


def test_sweep_spec_refuses_an_impossible_point() -> None:
    from rmaplab.sweep_spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="procs=0 is out of range"):
        parse_spec({"experiment": "aim7", "params": {"procs": [10, 0]}})
