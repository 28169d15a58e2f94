# SPDX-License-Identifier: GPL-2.0-only
"""The command line's Unix conventions (docs/cli.md), run as a user runs them:
the installed ``rmaplab`` in subprocesses and shell pipelines."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from rmaplab.cli import main
from rmaplab.cliutil import EXIT_PIPE
from rmaplab.kernel.diff import kernel_diff
from rmaplab.progress import BAR_WIDTH, progress_bar
from rmaplab.rmap import SCHEMES, VARIANTS
from rmaplab.trace import parse_trace_lines

RMAPLAB = str(Path(sys.executable).with_name("rmaplab"))
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "100"}


def run(*args: str, stdin: bytes | None = None, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run([RMAPLAB, *args], input=stdin, capture_output=True, timeout=300,
                          env=ENV, check=False, **kw)  # type: ignore[call-overload]


def sh(script: str, **kw: object) -> subprocess.CompletedProcess:
    """A bash pipeline with the venv's rmaplab first on PATH."""
    env = {**ENV, "PATH": f"{Path(RMAPLAB).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", script], capture_output=True, timeout=300, env=env,
                          check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    assert run("gen-trace", "--seed", "7", "--ops", "200", "-o", str(path)).returncode == 0
    return path


def test_pipeline_through_dashes_prints_one_record_and_nothing_on_stderr() -> None:
    p = sh("rmaplab gen-trace --seed 7 --ops 200 -o - | rmaplab replay - --results - "
           "--snapshots /dev/null | head -1")
    assert p.returncode == 0 and p.stderr == b""
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == {"line": 1, "op": "spawn", "ok": True}


def test_replay_from_stdin_is_replay_of_the_file(trace: Path, tmp_path: Path) -> None:
    a = run("replay", str(trace), "--results", "-", "--snapshots", str(tmp_path / "s1"), "-q")
    b = run("replay", "-", "--results", "-", "--snapshots", str(tmp_path / "s2"), "-q",
            stdin=trace.read_bytes())
    assert a.returncode == b.returncode == 0 and a.stderr == b.stderr == b""
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 200
    assert (tmp_path / "s1").read_bytes() == (tmp_path / "s2").read_bytes()


def test_replay_summary_line_on_stderr_unless_quiet(trace: Path, tmp_path: Path) -> None:
    p = run("replay", str(trace), "--results", str(tmp_path / "r"), "--snapshots",
            str(tmp_path / "s"), "--stats", "-")
    assert p.returncode == 0
    summary = p.stderr.decode().strip().splitlines()
    assert len(summary) == 1 and "200 ops" in summary[0] and "failed" in summary[0]
    assert "21 snapshots" in summary[0] and " s" in summary[0]
    stats = [json.loads(x) for x in p.stdout.splitlines()]  # --stats - went to stdout
    assert len(stats) == 22
    q = run("replay", str(trace), "--results", str(tmp_path / "r"), "--snapshots",
            str(tmp_path / "s"), "--quiet")
    assert q.returncode == 0 and q.stderr == b"" and q.stdout == b""


@pytest.mark.parametrize("outs, says", [
    (["--results", "-", "--snapshots", "-"], "both write to stdout"),
    (["--results", "{d}/x", "--snapshots", "{d}/x"], "are the same file"),
    (["--results", "{d}/x", "--snapshots", "{d}/./x"], "are the same file"),
    (["--results", "{t}", "--snapshots", "{d}/s"], "is the input TRACE"),
    (["--results", "{d}/r", "--snapshots", "{d}/s", "--stats", "{d}/r"], "are the same file"),
])
def test_outputs_that_would_mix_or_destroy_data_are_refused(trace: Path, tmp_path: Path,
                                                             outs: list[str], says: str) -> None:
    before = trace.read_bytes()
    args = [a.format(d=tmp_path, t=trace) for a in outs]
    p = run("replay", str(trace), *args)
    assert p.returncode == 2 and says in p.stderr.decode(), p.stderr
    assert b"Traceback" not in p.stderr and p.stdout == b""
    assert trace.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["t.jsonl"]  # nothing created


def test_an_output_naming_stdin_input_is_refused(trace: Path) -> None:
    before = trace.read_bytes()
    p = sh(f"rmaplab replay - --results {trace} --snapshots /dev/null < {trace}")
    assert p.returncode == 2 and "is the input TRACE (stdin)" in p.stderr.decode()
    assert trace.read_bytes() == before


def test_failed_run_leaves_existing_results_untouched(trace: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text("precious\n")
    p = run("replay", str(trace), "--results", str(results), "--snapshots",
            str(tmp_path / "no" / "such" / "s.jsonl"))
    assert p.returncode == 2 and "--snapshots" in p.stderr.decode()
    assert results.read_text() == "precious\n"
    p = run("replay", str(trace), "--results", str(results), "--snapshots", "/dev/full")
    assert p.returncode == 2 and "no space left writing /dev/full" in p.stderr.decode()
    assert results.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["r.jsonl", "t.jsonl"]  # no temporary left
    # and a run that succeeds replaces the file whole, keeping its mode
    results.chmod(0o640)
    assert run("replay", str(trace), "--results", str(results), "--snapshots", "/dev/null",
               "-q").returncode == 0
    assert len(results.read_text().splitlines()) == 200
    assert results.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("args", [
    ["replay", "{t}", "--results", "/dev/full", "--snapshots", "/dev/null"],
    ["gen-trace", "--seed", "1", "--ops", "5000", "-o", "/dev/full"],
    ["schemes", "--json"],
])
def test_full_disk_is_said_as_such(trace: Path, args: list[str]) -> None:
    argv = [a.format(t=trace) for a in args]
    if argv[0] == "schemes":
        p = sh(f"rmaplab {' '.join(argv)} > /dev/full")
        assert "no space left writing" in p.stderr.decode() or "No space" in p.stderr.decode()
    else:
        p = run(*argv)
        assert "no space left writing /dev/full" in p.stderr.decode(), p.stderr
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    assert b"internal error" not in p.stderr


def test_closed_pipe_ends_the_writer_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    assert run("gen-trace", "--seed", "3", "--ops", "20000", "-o", str(big)).returncode == 0
    p = sh(f"rmaplab replay {big} --results /dev/stdout --snapshots /dev/null | head -2; "
           "echo \"status ${PIPESTATUS[0]}\" >&2")
    assert p.stderr.decode().strip() == f"status {EXIT_PIPE}"
    assert len(p.stdout.splitlines()) == 2
    p = sh(f"rmaplab replay {big} --results - --snapshots /dev/null --stats /dev/null "
           "| head -c 10 >/dev/null; echo \"status ${PIPESTATUS[0]}\" >&2")
    assert p.stderr.decode().strip() == f"status {EXIT_PIPE}"


def test_gen_trace_streams_a_huge_trace_at_once() -> None:
    """100 million ops: the first lines come at once; closing the pipe ends it quietly."""
    proc = subprocess.Popen([RMAPLAB, "gen-trace", "--seed", "1", "--ops", "100000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert proc.stdout is not None and proc.stderr is not None
    t0 = time.monotonic()
    first = [proc.stdout.readline() for _ in range(1000)]
    assert time.monotonic() - t0 < 30
    assert len(parse_trace_lines([x.decode() for x in first])) == 1000
    proc.stdout.close()
    assert proc.wait(timeout=60) == EXIT_PIPE
    assert proc.stderr.read() == b""


def test_replay_dev_zero_fails_fast_on_the_line_limit() -> None:
    t0 = time.monotonic()
    p = run("replay", "/dev/zero", "--results", "/dev/null", "--snapshots", "/dev/null")
    assert time.monotonic() - t0 < 30
    assert p.returncode == 2, p.stderr
    assert "line 1" in p.stderr.decode() and "more than 65536 characters" in p.stderr.decode()


def _limit_address_space() -> None:
    limit = 2 << 30  # 2 GiB: the old whole-file read needed several times 600 MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_600_mb_of_blank_lines_stream_in_bounded_memory() -> None:
    p = subprocess.run(
        f"head -c 600000000 /dev/zero | tr '\\0' '\\n' | {RMAPLAB} replay - "
        "--results - --snapshots /dev/null",
        shell=True, capture_output=True, timeout=600, env=ENV, check=False,
        preexec_fn=_limit_address_space)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"" and "0 ops" in p.stderr.decode()


def test_trace_errors_from_stdin_name_the_line() -> None:
    p = run("replay", "-", "--results", "/dev/null", "--snapshots", "/dev/null",
            stdin=b'{"op": "spawn", "task": "a"}\n\n{"op": "spawn", "task": "a"}\n')
    assert p.returncode == 2
    assert "invalid trace (stdin): line 3, key 'task'" in p.stderr.decode()


def test_every_verb_has_quiet_and_no_progress() -> None:
    for name, cmd in main.commands.items():
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"-q", "--quiet", "--no-progress"} <= opts, name


@pytest.mark.parametrize("argv", [
    ["replay", "{t}", "--scheme", "nope", "--results", "-", "--snapshots", "-"],
    ["show", "{t}", "--at", "3", "--scheme", "nope"],
    ["kernel-diff", "{t}", "--scheme", "nope"],
    ["experiment", "aim7", "--schemes", "modern,nope"],
    ["sweep", "{t}", "--db", "x.sqlite", "--schemes", "nope"],
])
def test_scheme_options_are_checked_by_click(trace: Path, argv: list[str]) -> None:
    p = run(*[a.format(t=trace) for a in argv])
    assert p.returncode == 2 and "'nope'" in p.stderr.decode(), p.stderr
    for scheme in SCHEMES:
        assert scheme in p.stderr.decode()


def test_schemes_verb_lists_every_scheme_as_table_and_json() -> None:
    p = run("schemes")
    assert p.returncode == 0
    for scheme in SCHEMES:
        assert scheme in p.stdout.decode()
    rows = json.loads(run("schemes", "--json").stdout)
    assert [r["name"] for r in rows] == [*SCHEMES, *VARIANTS]
    assert [r["buggy_on_purpose"] for r in rows] == [r["name"] in VARIANTS for r in rows]
    assert all(r["era"] and r["author"] and r["description"] for r in rows)


def test_experiment_json_and_list_params(tmp_path: Path) -> None:
    p = run("experiment", "aim7", "--schemes", "modern,anonmm", "--param", "procs=2,3",
            "--param", "pages=8", "--param", "cow=1", "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["experiment"] == "aim7" and len(doc["records"]) == 4
    assert {(r["scheme"], r["procs"]) for r in doc["records"]} == \
        {(s, n) for s in ("modern", "anonmm") for n in (2, 3)}
    assert all("ours" in c for c in doc["claims"])
    assert (tmp_path / "aim7.csv").exists()
    rows = json.loads(run("experiment", "aim7", "--list-params", "--json").stdout)["params"]
    assert {r["name"]: (r["default"], r["min"], r["max"]) for r in rows} == \
        {"procs": ([10, 100, 1000], 1, 1_000_000), "pages": ([1000], 1, 1 << 20),
         "cow": ([1.0, 0.0], 0.0, 1.0)}
    assert all(r["meaning"] for r in rows)
    table = run("experiment", "swapoff", "--list-params").stdout.decode()
    assert "chain, fan, tree" in table and "unuse" in table
    helptext = run("experiment", "--help").stdout.decode()
    assert "heap_pages=256" in helptext and "vm_lock_rmap=0,1" in helptext


def test_experiment_all_schemes(tmp_path: Path) -> None:
    p = run("experiment", "hierarchy", "--schemes", "all", "--param", "generations=2",
            "--param", "vmas=1", "--out", str(tmp_path), "--json", "-q")
    assert p.returncode == 0 and p.stderr == b""
    assert [r["scheme"] for r in json.loads(p.stdout)["records"]] == list(SCHEMES)


def test_kernel_diff_json_parses() -> None:
    ops = parse_trace_lines(['{"op": "spawn", "task": "a"}', '{"op": "snapshot", "label": "x"}'])
    same = ([{"line": 1, "op": "spawn", "ok": True}, {"line": 2, "op": "snapshot", "ok": True}],
            [{"label": "x", "tasks": {"a": {"vmas": [], "pages": {}}}}])
    other = ([{"line": 1, "op": "spawn", "ok": False, "error": "ENOMEM"}, same[0][1]], same[1])
    out: list[str] = []
    assert kernel_diff(ops, echo=out.append, run_kernel=lambda p: same,
                       run_model=lambda p: other, as_json=True) == 1
    doc = json.loads("".join(out))
    assert doc["verdict"] == "differ" and doc["divergences"][0]["line"] == 1
    assert {d["field"] for d in doc["divergences"]} == {"ok", "error"}
    out.clear()
    assert kernel_diff(ops, echo=out.append, run_kernel=lambda p: same,
                       run_model=lambda p: same, as_json=True) == 0
    assert json.loads("".join(out))["verdict"] == "agree"


def test_show_to_stdout_and_from_stdin(trace: Path) -> None:
    p = run("show", "-", "--at", "20", "--format", "dot", "-o", "-", stdin=trace.read_bytes())
    assert p.returncode == 0 and p.stdout.startswith(b"digraph") and p.stderr == b""


def test_report_refuses_to_overwrite_its_database(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    db.write_bytes(b"not really a database, but it must survive")
    p = run("report", str(db), "--csv", str(db))
    assert p.returncode == 2 and "is the input DB" in p.stderr.decode()
    assert db.read_bytes() == b"not really a database, but it must survive"


def test_help_points_to_the_cli_page() -> None:
    text = run("--help").stdout.decode()
    assert "docs/cli.md" in text and "_RMAPLAB_COMPLETE=bash_source" in text
    page = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    body = page.read_text()
    for status in ("0", "1", "2", "3", "4", "70", "141"):
        assert f"| {status} " in body
    for name in main.commands:
        assert f"`{name}`" in body


def test_completion_script_is_produced() -> None:
    p = subprocess.run([RMAPLAB], capture_output=True, timeout=60, check=False,
                       env={**ENV, "_RMAPLAB_COMPLETE": "bash_source"})
    assert p.returncode == 0 and b"_rmaplab_completion" in p.stdout


@pytest.mark.parametrize("width", [80, 100])
def test_progress_bar_keeps_its_bar_and_time_left(width: int) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=True, color_system=None)
    bar = progress_bar(console)
    task = bar.add_task("aim7 anon_vma_chain procs=1000 pages=1048576 cow=1.0 " * 3, total=30)
    bar.advance(task, 7)
    console.print(bar.get_renderable())
    line = buf.getvalue().splitlines()[0]
    assert len(line) <= width and "7/30" in line and "left" in line and "…" in line
    assert line.count("━") + line.count("╸") + line.count(" ") >= BAR_WIDTH


def test_sweep_json_and_report_to_stdout_and_full_disk(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "hierarchy"\n[params]\ngenerations = [2, 3]\nvmas = 1\n')
    db = tmp_path / "r.sqlite"
    p = run("sweep", str(spec), "--db", str(db), "--scheduler", "inline", "--schemes",
            "modern,anonmm", "--json", "-q")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["points"] == 4 and doc["done"] == 4 and doc["complete"] is True
    p = run("report", str(db), "--csv", "-")
    assert p.returncode == 0, p.stderr
    rows = p.stdout.decode().splitlines()
    assert len(rows) == 5 and "generations" in rows[0]  # a header and the four points
    assert "wrote stdout" in p.stderr.decode() or "wrote -" in p.stderr.decode()
    csv_path = tmp_path / "points.csv"
    csv_path.write_text("old\n")
    p = run("report", str(db), "--csv", str(csv_path), "--html", "/dev/full")
    assert p.returncode == 2 and "no space left writing /dev/full" in p.stderr.decode()
    assert b"Traceback" not in p.stderr and csv_path.read_text() == "old\n"
    p = run("report", str(db), "--csv", "-", "--parquet", "-")
    assert p.returncode == 2 and "both write to stdout" in p.stderr.decode()


def test_model_bug_keeps_records_aside_and_the_old_results(trace: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from click.testing import CliRunner

    import rmaplab.replay_cli as replay_cli

    real = replay_cli.run_op

    def buggy(m, op):  # type: ignore[no-untyped-def]
        if op.line == 5:
            raise KeyError("a model bug")
        return real(m, op)

    monkeypatch.setattr(replay_cli, "run_op", buggy)
    results = tmp_path / "r.jsonl"
    results.write_text("old\n")
    r = CliRunner().invoke(main, ["replay", str(trace), "--results", str(results),
                                  "--snapshots", str(tmp_path / "s.jsonl")])
    assert r.exit_code == 70 and "internal error" in r.output and "trace line 5" in r.output
    assert results.read_text() == "old\n"
    kept = [json.loads(x) for x in (tmp_path / "r.jsonl.partial").read_text().splitlines()]
    assert [k["line"] for k in kept] == [1, 2, 3, 4]
    assert str(tmp_path / "r.jsonl.partial") in r.output


def test_dev_stdout_is_written_through_the_descriptor(trace: Path, tmp_path: Path) -> None:
    """`--results /dev/stdout >> FILE` appends, as `>>` asks: it is not reopened."""
    out = tmp_path / "o.jsonl"
    for _ in range(2):
        p = sh(f"rmaplab replay {trace} --results /dev/stdout --snapshots /dev/null -q >> {out}")
        assert p.returncode == 0 and p.stderr == b""
    assert len(out.read_text().splitlines()) == 400
