# SPDX-License-Identifier: GPL-2.0-only
"""Host memory budgeting: sizes the model accepts but this machine cannot
hold are refused before they run, with the estimate and the limit; the
estimate is checked against the peak RSS of real runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab import budget
from rmaplab.budget import Footprint, OverBudget, parse_size, trace_footprint
from rmaplab.cli import main
from rmaplab.consts import MAX_PAGES, WINDOW_START
from rmaplab.experiments import experiments, run_experiment
from rmaplab.machine import Config, Machine
from rmaplab.replay import replay, write_snapshot
from rmaplab.trace import parse_trace_lines


def _trace(chunks: int, *, write: bool, forks: int = 0, pages: int = MAX_PAGES) -> list[str]:
    """chunks VMAs of `pages` pages, each read (zero page) or written, then
    forks, then a snapshot."""
    lines = [json.dumps({"op": "spawn", "task": "t"})]
    for i in range(chunks):
        addr = hex(WINDOW_START + i * pages * 4096)
        lines.append(json.dumps({"op": "mmap", "task": "t", "addr": addr, "pages": pages,
                                 "prot": "rw"}))
        if write:
            lines.append(json.dumps({"op": "write", "task": "t", "addr": addr, "pages": pages,
                                     "value": 1}))
        else:
            lines.append(json.dumps({"op": "read", "task": "t", "addr": addr, "pages": pages}))
    lines += [json.dumps({"op": "fork", "task": "t", "child": f"c{k}"}) for k in range(forks)]
    lines.append(json.dumps({"op": "snapshot", "label": "end"}))
    return lines


def test_parse_size() -> None:
    assert parse_size("2G") == 2 << 30 and parse_size("512M") == 512 << 20
    assert parse_size("1.5GiB") == 3 << 29 and parse_size("4096K") == 4 << 20
    assert parse_size(None) is None
    for bad in ("lots", "-1G", "10", "2X"):
        with pytest.raises(budget.BudgetError):
            parse_size(bad)
    r = CliRunner().invoke(main, ["replay", "x.jsonl", "--results", "r", "--snapshots", "s",
                                  "--max-memory", "lots"])
    assert r.exit_code == 2 and "--max-memory" in r.output and "512M" in r.output


def test_16m_zero_page_reads_then_a_snapshot_is_refused(tmp_path: Path) -> None:
    lines = _trace(16, write=False)
    fp = trace_footprint(parse_trace_lines(lines))
    assert fp.snapshot == 16 * MAX_PAGES and fp.frames == 0
    assert fp.bytes("modern") > 5.5 * 2**30  # what it took here, and more
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    res = tmp_path / "res.jsonl"
    r = CliRunner().invoke(main, ["replay", str(trace), "--results", str(res), "--snapshots",
                                  str(tmp_path / "snap.jsonl"), "--max-memory", "4G"])
    assert r.exit_code == 2, r.output
    assert "needs about 8." in r.output and "more than the 4.0 GiB --max-memory allows" \
        in r.output and "refused before running" in r.output
    assert not res.exists()
    with pytest.raises(OverBudget) as e:
        replay(parse_trace_lines(lines), max_memory=4 << 30)
    assert e.value.limit == 4 << 30 and e.value.estimate > 7 << 30


def test_16m_written_pages_with_forks_is_refused(tmp_path: Path) -> None:
    fp = trace_footprint(parse_trace_lines(_trace(16, write=True, forks=3)))
    assert fp.frames == 16 * MAX_PAGES and fp.pte_slots == 4 * 16 * MAX_PAGES
    assert fp.bytes("modern") > 3 << 30 and fp.bytes("pte_chain") > fp.bytes("modern")
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(_trace(16, write=True, forks=3)) + "\n")
    r = CliRunner().invoke(main, ["replay", str(trace), "--results", str(tmp_path / "r"),
                                  "--snapshots", str(tmp_path / "s"), "--max-memory", "3G"])
    assert r.exit_code == 2 and "needs about" in r.output, r.output


def test_exit_and_munmap_give_memory_back_in_the_estimate() -> None:
    lines = _trace(2, write=True, pages=1000)[:-1] + [
        json.dumps({"op": "munmap", "task": "t", "addr": hex(WINDOW_START), "pages": 1000}),
        json.dumps({"op": "spawn", "task": "u"}),
        json.dumps({"op": "snapshot", "label": "s"})]
    fp = trace_footprint(parse_trace_lines(lines))
    assert fp.pte_slots == 2000 and fp.snapshot == 1000


@pytest.mark.parametrize(("argv", "needle"), [
    (["aim7", "--param", "procs=1000000", "--param", "pages=1048576", "--param", "cow=0"],
     "TiB of host memory"),
    (["contention", "--param", "cpus=1024", "--param", "procs=100000", "--param", "cow=0.01",
      "--max-memory", "4G"], "--max-memory allows"),
])
def test_experiment_points_too_big_for_the_host_are_refused(tmp_path: Path, argv: list[str],
                                                            needle: str) -> None:
    r = CliRunner().invoke(main, ["experiment", *argv, "--out", str(tmp_path / "out"),
                                  "--no-progress"])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "refused before running" in r.output
    assert not list((tmp_path / "out").glob("*.csv"))


def test_library_and_sweep_refuse_a_point_over_max_memory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host memory"):
        run_experiment(experiments()["aim7"], params=["procs=100000", "pages=100000",
                                                      "cow=0"], progress=False)
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "aim7"\nschemes = ["modern"]\n[params]\nprocs = [2, 5000]\n'
                    "pages = 1000\ncow = 0.0\n")
    r = CliRunner().invoke(main, ["sweep", str(spec), "--db", str(tmp_path / "r.sqlite"),
                                  "--scheduler", "inline", "--max-memory", "100M"])
    assert r.exit_code == 2 and "procs=5000" in r.output and "100.0 MiB" in r.output, r.output
    assert not (tmp_path / "r.sqlite").exists()


def test_write_snapshot_streams_the_text_json_dumps_gives() -> None:
    m = Machine(Config())
    m.spawn("a")
    m.mmap("a", WINDOW_START, 20_000, "rw")
    m.write("a", WINDOW_START, 12_000, 3)
    m.fork("a", "b")
    m.read("b", WINDOW_START + 12_000 * 4096, 8_000, [])
    snap = m.snapshot("x")
    assert len(snap["tasks"]["b"]["pages"]) == 20_000

    class Pieces(io.StringIO):
        biggest = 0

        def write(self, s: str) -> int:
            self.biggest = max(self.biggest, len(s))
            return super().write(s)

    f = Pieces()
    write_snapshot(f, snap)
    assert f.getvalue() == json.dumps(snap) + "\n"
    assert f.biggest < len(f.getvalue()) / 4  # never the whole line at once


# peak RSS from VmHWM: getrusage's ru_maxrss keeps the parent's across fork and exec
MEASURE = r'''
import sys
from rmaplab.replay import replay
from rmaplab.trace import parse_trace_lines
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
ops = parse_trace_lines(sys.stdin.read().splitlines())
start = hwm()
out = replay(ops, scheme=sys.argv[1])
print(start, hwm())
'''


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(("scheme", "write", "forks"), [("modern", True, 2),
                                                         ("pte_chain", True, 2),
                                                         ("modern", False, 0)])
def test_estimate_bounds_the_measured_peak(scheme: str, write: bool, forks: int) -> None:
    """The estimate (replay() keeping every output), less BASE, is above
    what the replay adds to the peak RSS, and within a small factor of it:
    the constants are measured. BASE covers the interpreter and imports."""
    lines = _trace(1, write=write, forks=forks, pages=1 << 18)
    need = trace_footprint(parse_trace_lines(lines), keep_outputs=True).bytes(scheme)
    out = subprocess.run([sys.executable, "-c", MEASURE, scheme], input="\n".join(lines),
                         capture_output=True, text=True, timeout=120, check=True)
    start, peak = map(int, out.stdout.split())
    assert start <= budget.BASE, start
    grew, model = peak - start, need - budget.BASE
    assert grew <= model <= 2.5 * grew, (start, peak, need)


def test_footprint_bytes_by_scheme() -> None:
    fp = Footprint(pte_slots=10, frames=10, mapped=10)
    assert fp.bytes("pte_chain") - fp.bytes("modern") == 10 * budget.CHAIN
    assert fp.bytes(None) == fp.bytes("pte_chain")
