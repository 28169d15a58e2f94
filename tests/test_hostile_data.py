# SPDX-License-Identifier: GPL-2.0-only
"""Hostile and careless data: results files and sweep specs that must end
in a clear message and exit status 2, never 70, never a traceback, and never
run code named by a data file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rmaplab.cli import main
from rmaplab.store import Store
from rmaplab.sweep import run_sweep
from rmaplab.sweep_spec import parse_spec

# an "experiment" module whose import and whose function leave marker files
EVIL = '''
import os, pathlib
pathlib.Path(os.environ["EVIL_MARK"], "imported").touch()

def EXP():
    pathlib.Path(os.environ["EVIL_MARK"], "called").touch()
'''


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _refused(r: Result, *needles: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    for n in needles:
        assert n in r.output, (n, r.output)


def _small_sweep(db: Path, repeats: int = 1) -> None:
    run_sweep({"experiment": "aim7", "schemes": ["modern"], "repeats": repeats,
               "params": {"procs": [2, 3], "pages": 4, "cow": 1.0}}, db, scheduler="inline",
              progress=False)


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rmaplab_evil_mod.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EVIL_MARK", str(tmp_path))
    return tmp_path


def test_report_never_imports_the_module_a_results_file_names(evil: Path) -> None:
    db = evil / "r.sqlite"
    _small_sweep(db)
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE sweeps SET experiment = 'evil', "
                    "experiment_ref = 'rmaplab_evil_mod:EXP'")
        con.execute("UPDATE points SET experiment = 'evil'")
    con.close()
    r = _cli("report", str(db), "--html", str(evil / "r.html"))
    assert r.exit_code == 0, r.output
    assert not (evil / "imported").exists() and not (evil / "called").exists()
    text = (evil / "r.html").read_text()
    assert "Experiment unknown to this rmaplab" in text and "rmaplab_evil_mod:EXP" in text
    assert "rmaplab_evil_mod" not in sys.modules


def test_spec_module_attr_needs_allow_import_and_must_be_an_experiment(evil: Path) -> None:
    spec, db = evil / "s.toml", evil / "r.sqlite"
    for ref in ("sys:exit", "rmaplab_evil_mod:EXP"):
        spec.write_text(f'experiment = "{ref}"\n')
        _refused(_cli("sweep", str(spec), "--db", str(db)), "--allow-import", "key 'experiment'")
        assert not (evil / "imported").exists()
    # trusted: the module is imported, but a function is not an Experiment and is not called
    _refused(_cli("sweep", str(spec), "--db", str(db), "--allow-import"),
             "not an rmaplab Experiment")
    assert (evil / "imported").exists() and not (evil / "called").exists()
    spec.write_text('experiment = "sys:exit"\n')
    _refused(_cli("sweep", str(spec), "--db", str(db), "--allow-import"),
             "'sys:exit' is builtin_function_or_method, not an rmaplab Experiment")
    assert not db.exists()


@pytest.mark.parametrize("name", ["r%41.sqlite", "r#x.sqlite", "r?mode=ro.sqlite"])
def test_results_file_names_are_not_uri_syntax(tmp_path: Path, name: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _small_sweep(tmp_path / "rA.sqlite")  # what r%41 would read as a URI
    _refused(_cli("report", name, "--csv", "x.csv"), "no such results file")
    _small_sweep(Path(name), repeats=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["rA.sqlite", name])
    r = _cli("report", name, "--csv", "x.csv")
    assert r.exit_code == 0 and "(4 points)" in r.output, r.output


def test_html_error_bars_of_equal_repeats_whose_mean_rounds_below_them(tmp_path: Path) -> None:
    value = 993.6375297737  # five of them average to just below it
    assert statistics.fmean([value] * 5) < value
    db = tmp_path / "r.sqlite"
    spec = parse_spec({"experiment": "aim7", "schemes": ["modern"], "repeats": 5,
                       "params": {"procs": [600, 700]}})
    with Store(db) as s:
        for p in spec.points():
            s.record(p, ok=True, metrics={"listed_avg": value, "visited_avg": value},
                     error=None, wall_s=0.5, version="0.1.0", spec_hash=spec.hash)
    r = _cli("report", str(db), "--html", str(tmp_path / "r.html"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.html").read_text().count("<svg") == 2


def test_deeply_nested_spec_names_the_key(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "aim7"\n[params]\nprocs = ' + "[" * 5000 + "1"
                    + "]" * 5000 + "\n")
    _refused(_cli("sweep", str(spec), "--db", str(tmp_path / "r.sqlite")),
             "key 'params.procs'", "line 3", "nested more than")
    # strings and comments holding brackets are not nesting
    spec.write_text('experiment = "aim7"  # [[[[[[[[[[[[\ndescription = "[[[[[[[[[[[[[[[["\n'
                    "[params]\nprocs = [2]\npages = 4\n")
    r = _cli("sweep", str(spec), "--db", str(tmp_path / "r.sqlite"), "--scheduler", "inline",
             "--no-progress")
    assert r.exit_code == 0, r.output


def _corrupt(db: Path) -> None:
    """Overwrite the points table's root page, in the middle of the file."""
    con = sqlite3.connect(db)
    (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'points'").fetchone()
    (size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)


def test_report_on_damaged_or_malformed_results_is_status_2(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    run_sweep({"experiment": "aim7", "schemes": ["modern", "anonmm"], "repeats": 20,
               "params": {"procs": [2, 3], "pages": 4}}, db, scheduler="inline", progress=False)
    for column, value, needle in (("params", "[1, 2]", "params is not a JSON object"),
                                  ("params", "{nope", "params is not a JSON object"),
                                  ("metrics", "5", "metrics is not a JSON object")):
        bad = tmp_path / f"bad-{column}.sqlite"
        shutil.copy(db, bad)
        con = sqlite3.connect(bad)
        with con:
            con.execute(f"UPDATE points SET {column} = ? WHERE id = 7", (value,))
        con.close()
        _refused(_cli("report", str(bad), "--html", str(tmp_path / "x.html")), needle, "point 7")
    assert db.stat().st_size > 3 * 4096
    _corrupt(db)
    r = _cli("report", str(db), "--html", str(tmp_path / "x.html"), "--csv",
             str(tmp_path / "x.csv"))
    _refused(r, str(db))
    assert "damaged" in r.output or "not an rmaplab results file" in r.output


def test_report_on_a_locked_file_says_locked_quickly(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _small_sweep(db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("INSERT INTO meta VALUES ('held', 'x')")
    try:
        t0 = time.monotonic()
        _refused(_cli("report", str(db), "--csv", str(tmp_path / "x.csv")),
                 "locked by another process (busy)")
        assert time.monotonic() - t0 < 10
    finally:
        con.execute("ROLLBACK")
        con.close()


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[Path]:
    """directory, made read-only: a read-only bind mount where we are root,
    else chmod; skips when neither stops a write."""
    view = directory.parent / (directory.name + "-ro")
    view.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        ok = subprocess.run(["mount", "--bind", str(directory), str(view)],
                            capture_output=True, check=False).returncode == 0
        if ok:
            mounted = True
            subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True,
                           check=False)
    if not mounted:
        view.rmdir()
        view = directory
        view.chmod(0o555)
    try:
        if os.access(view, os.W_OK):
            pytest.skip("cannot make a read-only directory here (root without mount)")
        yield view
    finally:
        if mounted:
            subprocess.run(["umount", str(view)], capture_output=True, check=False)
            view.rmdir()
        else:
            directory.chmod(0o755)


def test_report_on_a_read_only_mount(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    _small_sweep(src / "r.sqlite")  # closed: WAL mode, no -wal left
    shutil.copy(src / "r.sqlite", src / "killed.sqlite")
    (src / "killed.sqlite-wal").write_bytes(b"\0" * 4096)  # a log left by a killed sweep
    with _read_only(src) as ro:
        r = _cli("report", str(ro / "r.sqlite"), "--csv", str(tmp_path / "x.csv"))
        assert r.exit_code == 0 and "(2 points)" in r.output, r.output
        _refused(_cli("report", str(ro / "killed.sqlite"), "--csv", str(tmp_path / "y.csv")),
                 "copy the file and its -wal file")


def test_sweep_refuses_someone_elses_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "theirs.sqlite"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE accounts (name TEXT, balance REAL)")
        con.execute("INSERT INTO accounts VALUES ('a', 1.0)")
    con.close()
    before = db.read_bytes()
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "aim7"\n[params]\nprocs = [2]\npages = 4\n')
    _refused(_cli("sweep", str(spec), "--db", str(db), "--scheduler", "inline"),
             "not an rmaplab results file", "accounts")
    assert db.read_bytes() == before and not Path(str(db) + "-wal").exists()
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file is a new store
    r = _cli("sweep", str(spec), "--db", str(empty), "--scheduler", "inline", "--no-progress")
    assert r.exit_code == 0, r.output


def test_report_refuses_an_output_that_is_its_input(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _small_sweep(db)
    before = db.read_bytes()
    # the CLI's path check says it first; the report's own check (for the
    # -wal and -shm files too) is behind it
    _refused(_cli("report", str(db), "--csv", str(db)), "is the input DB")
    _refused(_cli("report", str(db), "--html", str(tmp_path / "." / "r.sqlite")),
             "is the input DB")
    _refused(_cli("report", str(db), "--csv", str(db) + "-wal"), "is the results file")
    _refused(_cli("report", str(db), "--csv", str(tmp_path / "o"), "--html",
                  str(tmp_path / "o")), "o")
    assert db.read_bytes() == before and not (tmp_path / "o").exists()


def test_sweep_workers_bounded_by_the_cpus(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "aim7"\n[params]\nprocs = [2]\npages = 4\n')
    t0 = time.monotonic()
    _refused(_cli("sweep", str(spec), "--db", str(tmp_path / "r.sqlite"), "--workers", "1024"),
             "--workers 1024", f"{4 * (os.cpu_count() or 1)} worker processes")
    assert time.monotonic() - t0 < 5 and not (tmp_path / "r.sqlite").exists()


SLOW = '''
import time
from rmaplab.experiments import Experiment

def run(scheme, p):
    time.sleep(0.05)
    return {"y": p["x"], "pad": "x" * p["pad"]}

EXPERIMENT = Experiment(name="slowtest", title="slow", params={"x": list(range(40)), "pad": [0]},
                        run=run, columns=("y",))
'''


def _slow_env(d: Path) -> dict[str, str]:
    (d / "rmaplab_slowtest_exp.py").write_text(SLOW)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(d), os.environ.get("PYTHONPATH",
                                                                                  "")])}


def _sweep_cmd(spec: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from rmaplab.cli import main; main()", "sweep", str(spec),
            "--db", str(db), "--no-progress", "--allow-import", *extra]


def _stored(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM points").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_two_sweeps_on_one_file_at_once(tmp_path: Path) -> None:
    env = _slow_env(tmp_path)
    spec, db = tmp_path / "s.toml", tmp_path / "r.sqlite"
    spec.write_text('experiment = "rmaplab_slowtest_exp:EXPERIMENT"\nschemes = ["modern"]\n')
    first = subprocess.Popen(_sweep_cmd(spec, db, "--scheduler", "inline"), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _stored(db) < 2:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        second = subprocess.run(_sweep_cmd(spec, db, "--scheduler", "inline"), env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 2, second.stderr
        assert "another sweep is running on this results file" in second.stderr
        assert "Traceback" not in second.stderr
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert "40 run now" in out
    with Store(db, readonly=True) as s:
        (run,) = s.runs()  # the second sweep started no run and computed nothing
        assert run["done"] == 40
    again = subprocess.run(_sweep_cmd(spec, db, "--scheduler", "inline"), env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "40 already stored, 0 run now" in again.stdout


def _tmpfs(directory: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(directory)], capture_output=True, check=False).returncode == 0


def test_full_disk_mid_sweep_is_said_and_keeps_what_was_stored(tmp_path: Path) -> None:
    env = _slow_env(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    if not _tmpfs(small, "2m"):
        pytest.skip("needs root and mount -t tmpfs for a small file system")
    try:
        spec, db = tmp_path / "s.toml", small / "r.sqlite"
        # each point stores about 100 KB of metrics: the 2 MB file system fills part-way
        spec.write_text('experiment = "rmaplab_slowtest_exp:EXPERIMENT"\nschemes = ["modern"]\n'
                        "[params]\npad = 100000\n")
        out = subprocess.run(_sweep_cmd(spec, db, "--scheduler", "inline"), env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 2, out.stderr
        assert "the disk is full" in out.stderr and "every point stored before it is kept" \
            in out.stderr, out.stderr
        assert "internal error" not in out.stderr and "Traceback" not in out.stderr
        stored = _stored(db)
        assert 0 < stored < 40
        with Store(db, readonly=True) as s:
            assert len(s.records()) == stored
    finally:
        subprocess.run(["umount", str(small)], capture_output=True, check=False)


def test_sweep_killed_as_a_process_group_leaves_no_semaphores(tmp_path: Path) -> None:
    env = _slow_env(tmp_path)
    spec, db = tmp_path / "s.toml", tmp_path / "r.sqlite"
    spec.write_text('experiment = "rmaplab_slowtest_exp:EXPERIMENT"\nschemes = ["modern"]\n'
                    "repeats = 20\n")
    proc = subprocess.Popen(_sweep_cmd(spec, db, "--workers", "2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    shm = Path("/dev/shm")
    if not shm.is_dir():
        proc.kill()
        pytest.skip("no /dev/shm")
    mine = f"sem.mp-rmaplab{proc.pid}-"
    try:
        deadline = time.monotonic() + 90
        while _stored(db) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        held = [p for p in shm.iterdir() if p.name.startswith(mine)]
        assert held, "the cluster's semaphores do not carry the sweep's prefix"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 15
    while any(p.name.startswith(mine) for p in shm.iterdir()):
        assert time.monotonic() < deadline, [p.name for p in shm.iterdir()
                                             if p.name.startswith(mine)]
        time.sleep(0.1)


def test_store_params_json_is_validated_on_records(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _small_sweep(db)
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE points SET params = ? WHERE id = 1", (json.dumps("x"),))
    con.close()
    with Store(db, readonly=True) as s, pytest.raises(Exception, match="point 1: params"):
        s.records()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_report_to_a_full_disk_says_so(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _small_sweep(db)
    _refused(_cli("report", str(db), "--csv", "/dev/full"), "no space left writing /dev/full")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # ticks near 1e308
def test_report_with_numbers_no_float_holds(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    spec = parse_spec({"experiment": "aim7", "schemes": ["modern"], "repeats": 2,
                       "params": {"procs": [2, 3]}})
    with Store(db) as s:
        for n, p in enumerate(spec.points()):
            s.record(p, ok=True, metrics={"listed_avg": 10 ** 400 if n else float("nan"),
                                          "visited_avg": 1e308 * (n + 1)},
                     error=None, wall_s=0.1, version="0.1.0", spec_hash=spec.hash)
    r = _cli("report", str(db), "--html", str(tmp_path / "r.html"), "--csv",
             str(tmp_path / "r.csv"))
    assert r.exit_code == 0, r.output
