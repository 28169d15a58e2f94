# SPDX-License-Identifier: GPL-2.0-only
"""Sweeps: specs, the results store, resume after SIGKILL, failed points.

The test experiment lives in a module the test writes (named by the spec
as "module:ATTR", run with --allow-import): each point sleeps a little, and x = 3 fails while a
marker file exists, so a sweep can be killed part-way and a failure can be
made to go away before --retry-failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.store import Store
from rmaplab.sweep import run_sweep
from rmaplab.sweep_spec import SpecError, load_spec, parse_spec

EXP_MODULE = '''
import os, time
from rmaplab.experiments import Experiment, Plot

def run(scheme, p):
    time.sleep(float(os.environ.get("SWEEPTEST_SLEEP", "0")))
    if p["x"] == 3 and os.path.exists(os.environ.get("SWEEPTEST_FAIL", "/nonexistent")):
        raise RuntimeError("deliberate failure at x=3")
    return {"y": 2 * p["x"] + (scheme == "modern"), "z": p["x"] / 2}

EXPERIMENT = Experiment(name="sweeptest", title="sweep test", params={"x": [1, 2, 3, 4, 5, 6]},
                        run=run, columns=("y", "z"),
                        plots=[Plot(x="x", y="y", xlabel="x", ylabel="y")])
'''

SPEC = '''
experiment = "rmaplab_sweeptest_exp:EXPERIMENT"
schemes = ["modern", "anon_vma_chain"]
repeats = 2
'''
NPOINTS = 6 * 2 * 2
NFAIL = 2 * 2  # x = 3, both schemes, both repeats


@pytest.fixture
def exp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rmaplab_sweeptest_exp.py").write_text(EXP_MODULE)
    (tmp_path / "spec.toml").write_text(SPEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _rows(db: Path) -> dict[tuple, dict]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return {(r["experiment"], r["params_key"], r["repeat"]): dict(r)
                for r in con.execute("SELECT * FROM points")}
    finally:
        con.close()


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def _sweep(d: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from rmaplab.cli import main; main()", "sweep",
            str(d / "spec.toml"), "--db", str(d / "r.sqlite"), "--no-progress", "--allow-import",
            *extra]


def _wait_stored(proc: subprocess.Popen, db: Path, n: int) -> list:
    """Wait until the sweep has stored n points; return its descendant processes."""
    import psutil

    children: list = []
    deadline = time.monotonic() + 60
    while _count(db) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep stored nothing in 60 s"
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(proc.pid).children(recursive=True) or children
        time.sleep(0.02)
    return children


def test_sweep_killed_resumes_without_loss_and_retries_failed(exp_dir: Path) -> None:
    import psutil

    d, db = exp_dir, exp_dir / "r.sqlite"
    marker = d / "fail-marker"
    marker.write_text("x=3 fails while this exists")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), os.environ.get("PYTHONPATH", "")]),
           "SWEEPTEST_SLEEP": "0.15", "SWEEPTEST_FAIL": str(marker)}

    # 1. a sweep on a 2-worker LocalCluster, SIGKILLed once some points are stored
    proc = subprocess.Popen(_sweep(d, "--workers", "2"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        children = _wait_stored(proc, db, 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _rows(db)
    assert 3 <= len(before) < NPOINTS, "killed part-way"
    # the workers go with their parent (their nanny's pipe closes)
    _gone, alive = psutil.wait_procs(children, timeout=15)
    for p in alive:  # pragma: no cover - only if distributed changes
        p.kill()
    assert not alive, f"worker processes outlived the killed sweep: {alive}"

    # 2. the same command again: runs only what is missing; x=3 fails
    out = subprocess.run(_sweep(d, "--workers", "2"), env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stderr
    assert f"{len(before)} already stored" in out.stdout
    after = _rows(db)
    assert len(after) == NPOINTS
    for key, row in before.items():  # nothing stored before the kill was lost or rewritten
        assert after[key] == row
    failed = [r for r in after.values() if r["status"] == "failed"]
    assert len(failed) == NFAIL
    assert all("deliberate failure at x=3" in r["error"] and r["metrics"] is None
               for r in failed)
    assert all(json.loads(r["params"])["x"] == 3 for r in failed)

    # 3. again without --retry-failed: nothing runs, failed points stay
    out = subprocess.run(_sweep(d), env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1 and "0 run now" in out.stdout and "--retry-failed" in out.stdout
    assert _rows(db) == after

    # 4. the cause gone, --retry-failed runs exactly the failed points
    marker.unlink()
    out = subprocess.run(_sweep(d, "--workers", "2", "--retry-failed"), env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert f"{NFAIL} run now, 0 failed now" in out.stdout
    final = _rows(db)
    assert len(final) == NPOINTS and all(r["status"] == "ok" for r in final.values())
    for key, row in after.items():
        if row["status"] == "ok":
            assert final[key] == row
        else:
            assert final[key]["attempts"] == 2 and final[key]["error"] is None
    with Store(db, readonly=True) as s:
        recs = s.records("sweeptest")
        assert len(recs) == NPOINTS
        assert {(r["scheme"], r["x"], r["repeat"]) for r in recs} == {
            (sc, x, rep) for sc in ("modern", "anon_vma_chain") for x in range(1, 7)
            for rep in range(2)}
        assert all(r["y"] == 2 * r["x"] + (r["scheme"] == "modern") for r in recs)
        # the per-experiment view and the long metrics table answer plain SQL
        view = s.db.execute("SELECT x, AVG(y) FROM results_sweeptest WHERE scheme = 'modern' "
                            "GROUP BY x ORDER BY x").fetchall()
        assert [tuple(r) for r in view] == [(x, 2 * x + 1) for x in range(1, 7)]
        n = s.db.execute("SELECT COUNT(*) FROM metrics WHERE name = 'z'").fetchone()[0]
        assert n == NPOINTS
        runs = s.runs()
        assert runs[0]["ended_at"] is None  # the killed run never ended
        assert runs[-1]["outcome"] == "complete"


def _env(d: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), os.environ.get("PYTHONPATH", "")]),
            **extra}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sweep_interrupted_keeps_what_is_stored_and_resumes(exp_dir: Path, sig: int) -> None:
    """Ctrl-C (the whole process group, as a terminal sends it) or SIGTERM
    part-way: status 128+sig, the message, every stored point kept, the run
    marked interrupted, no worker left; the same command then runs the rest."""
    import psutil

    d, db = exp_dir, exp_dir / "r.sqlite"
    env = _env(d, SWEEPTEST_SLEEP="0.15")
    proc = subprocess.Popen(_sweep(d, "--workers", "2"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        children = _wait_stored(proc, db, 3)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, (out, err)
    assert "interrupted; every finished point is stored" in err
    assert "Traceback" not in err
    before = _rows(db)
    assert 3 <= len(before) < NPOINTS
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"worker processes outlived the interrupted sweep: {alive}"
    with Store(db, readonly=True) as s:
        (run,) = s.runs()
        assert run["outcome"] == "interrupted" and run["ended_at"] is not None, (dict(run), err)
        assert run["done"] == len(before)

    out = subprocess.run(_sweep(d, "--workers", "2"), env=_env(d), capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert f"{len(before)} already stored, {NPOINTS - len(before)} run now" in out.stdout
    after = _rows(db)
    assert len(after) == NPOINTS
    for key, row in before.items():
        assert after[key] == row


def test_sweep_on_an_existing_scheduler(exp_dir: Path) -> None:
    """--scheduler ADDRESS: the points run on that cluster's workers (here a
    LocalCluster of this test, standing in for a remote one), the run records
    the address, and the cluster outlives the sweep."""
    from distributed import Client, LocalCluster

    d, db = exp_dir, exp_dir / "r.sqlite"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env={"PYTHONPATH": str(d)}) as cluster:
        addr = cluster.scheduler_address
        out = subprocess.run(_sweep(d, "--scheduler", addr), env=_env(d), capture_output=True,
                             text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        with Client(addr, set_as_default=False) as client:  # still up, workers still there
            assert len(client.scheduler_info()["workers"]) == 2
            pids = set(client.run(os.getpid).values())
    rows = _rows(db)
    assert len(rows) == NPOINTS and all(r["status"] == "ok" for r in rows.values())
    # every point ran in one of that cluster's worker processes ("host:pid")
    assert {int(r["worker"].rsplit(":", 1)[1]) for r in rows.values()} <= pids
    with Store(db, readonly=True) as s:
        (run,) = s.runs()
        assert run["scheduler"] == addr and run["outcome"] == "complete"


def test_sweep_unreachable_scheduler_is_status_3(exp_dir: Path) -> None:
    out = subprocess.run(_sweep(exp_dir, "--scheduler", "tcp://127.0.0.1:9"), env=_env(exp_dir),
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 3, out.stderr
    assert "tcp://127.0.0.1:9" in out.stderr and "Traceback" not in out.stderr


def test_library_sweep_inline_records_and_arrow(exp_dir: Path) -> None:
    db = exp_dir / "lib.sqlite"
    res = run_sweep(exp_dir / "spec.toml", db, scheduler="inline", progress=False,
                    allow_import=True)
    assert res.done == NPOINTS and res.failed == 0 and res.complete
    assert len(res.records) == NPOINTS
    table = res.table()
    assert table.num_rows == NPOINTS and {"scheme", "x", "repeat", "y", "z"} <= set(
        table.column_names)
    again = run_sweep(exp_dir / "spec.toml", db, scheduler="inline", progress=False,
                    allow_import=True)
    assert again.skipped == NPOINTS and again.done == 0 and len(again.records) == NPOINTS
    # a different grid of the same experiment shares the points it has in common
    spec = parse_spec({"experiment": "rmaplab_sweeptest_exp:EXPERIMENT", "schemes": ["modern"],
                       "params": {"x": [1, 7]}}, allow_import=True)
    third = run_sweep(spec, db, scheduler="inline", progress=False)
    assert (third.skipped, third.done) == (1, 1)


def test_spec_errors_name_the_key(tmp_path: Path) -> None:
    cases = {
        'experiment = "nosuch"': "experiment",
        'experiment = "aim7"\nschemes = ["modern", "nope"]': "schemes",
        'experiment = "aim7"\nrepeats = 0': "repeats",
        'experiment = "aim7"\n[params]\nprocs = ["x"]': "params.procs",
        'experiment = "aim7"\n[params]\nbogus = 1': "params.bogus",
        'experiment = "aim7"\ncolour = 1': "colour",
        'schemes = "all"': "experiment",
    }
    for text, key in cases.items():
        p = tmp_path / "s.toml"
        p.write_text(text)
        with pytest.raises(SpecError) as e:
            load_spec(p)
        assert e.value.key == key, (text, e.value)
    p.write_text('experiment = "aim7"\n[params]\nprocs = [2, 3.0]\ncow = 1')
    spec = load_spec(p)
    assert spec.grid["procs"] == [2, 3] and spec.grid["cow"] == [1.0]
    assert spec.hash == load_spec(p).hash


def test_cli_sweep_bad_input_exits_2(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('experiment = "aim7"\n[params]\nprocs = "many"')
    r = CliRunner().invoke(main, ["sweep", str(p), "--db", str(tmp_path / "r.sqlite")])
    assert r.exit_code == 2 and "params.procs" in r.output and "Traceback" not in r.output
    p.write_text("experiment = [")
    r = CliRunner().invoke(main, ["sweep", str(p), "--db", str(tmp_path / "r.sqlite")])
    assert r.exit_code == 2 and "not valid TOML" in r.output
    r = CliRunner().invoke(main, ["sweep", str(tmp_path / "missing.toml"), "--db", "x.sqlite"])
    assert r.exit_code == 2 and "cannot read" in r.output
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    r = CliRunner().invoke(main, ["report", str(tmp_path / "junk.sqlite"), "--csv", "x.csv"])
    assert r.exit_code == 2 and "not an rmaplab results file" in r.output
    r = CliRunner().invoke(main, ["report", str(tmp_path / "none.sqlite"), "--csv", "x.csv"])
    assert r.exit_code == 2 and "no such results file" in r.output


def test_store_writes_a_point_once(tmp_path: Path) -> None:
    spec = parse_spec({"experiment": "aim7", "schemes": ["modern"],
                       "params": {"procs": [2], "pages": [4], "cow": [1.0]}})
    (pt,) = spec.points()
    with Store(tmp_path / "s.sqlite") as s:
        assert s.record(pt, ok=False, metrics=None, error="boom", wall_s=0.1, version="v",
                        spec_hash=spec.hash)
        assert s.record(pt, ok=True, metrics={"a": 1.5, "n": float("nan")}, error=None,
                        wall_s=0.2, version="v", spec_hash=spec.hash)
        assert not s.record(pt, ok=True, metrics={"a": 9}, error=None, wall_s=0.3,
                            version="v", spec_hash=spec.hash)
        (rec,) = s.records()
        assert rec["a"] == 1.5 and rec["n"] is None and rec["attempts"] == 2
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
