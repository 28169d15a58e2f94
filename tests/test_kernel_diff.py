# SPDX-License-Identifier: GPL-2.0-only
"""kernel-diff: the pure comparison on hand-made runs, the report, the exit
statuses, and (with root) the whole command against the recorded traces.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.kernel import cli as kcli
from rmaplab.kernel.diff import (
    DIFFER,
    EQUAL,
    NONDETERMINISTIC,
    Divergence,
    compare_runs,
    compared_prefix,
    format_report,
    kernel_diff,
)

from kernel_util import LOCK_WAIT, needs_kernel, page, parse, read_jsonl, recorded_traces

P0 = page(0)

TRACE = parse([
    {"op": "spawn", "task": "a"},
    {"op": "mmap", "task": "a", "addr": P0, "pages": 4, "prot": "rw"},
    {"op": "read", "task": "a", "addr": P0, "pages": 3},
    {"op": "fork", "task": "a", "child": "b"},
    {"op": "snapshot", "label": "one"},
])


def results() -> list[dict]:
    return [{"line": 1, "op": "spawn", "ok": True},
            {"line": 2, "op": "mmap", "ok": True},
            {"line": 3, "op": "read", "ok": True, "values": [0, 7, 0]},
            {"line": 4, "op": "fork", "ok": True},
            {"line": 5, "op": "snapshot", "ok": True}]


def snapshots() -> list[dict]:
    vma = [{"start": P0, "end": page(4), "prot": "rw", "locked": False}]
    shared = {P0: {"state": "present", "frame": "zero"},
              page(1): {"state": "present", "frame": "f1", "mapcount": 2}}
    return [{"label": "one", "tasks": {"a": {"vmas": vma, "pages": dict(shared)},
                                       "b": {"vmas": copy.deepcopy(vma), "pages": dict(shared)}}}]


def test_equal_runs_have_no_divergence():
    assert compare_runs(TRACE, results(), snapshots(), results(), snapshots()) == []


def test_result_divergences_name_line_field_and_both_values():
    kernel = results()
    kernel[1] = {"line": 2, "op": "mmap", "ok": False, "error": "EEXIST"}
    kernel[2] = {"line": 3, "op": "read", "ok": True, "values": [0, 7, 9]}
    divs = compare_runs(TRACE, results(), snapshots(), kernel, snapshots())
    assert divs == [
        Divergence(2, "mmap", "a", int(P0, 16), "error", None, "EEXIST"),
        Divergence(2, "mmap", "a", int(P0, 16), "ok", True, False),
        Divergence(3, "read", "a", int(page(2), 16), "values[2]", 0, 9),
    ]


def test_faulting_read_without_values_equals_empty_values():
    m, k = results(), results()
    m[2] = {"line": 3, "op": "read", "ok": False, "error": "SIGSEGV", "values": []}
    k[2] = {"line": 3, "op": "read", "ok": False, "error": "SIGSEGV"}
    assert compare_runs(TRACE, m, snapshots(), k, snapshots()) == []


def test_snapshot_divergences_per_page_vma_and_task():
    kernel = snapshots()
    b = kernel[0]["tasks"]["b"]
    b["pages"] = dict(b["pages"])
    b["pages"][page(1)] = {"state": "present", "frame": "f1", "mapcount": 1}
    b["pages"][page(3)] = {"state": "swap", "frame": "s1"}
    del b["pages"][P0]
    kernel[0]["tasks"]["a"]["vmas"][0]["locked"] = True
    kernel[0]["tasks"]["c"] = {"vmas": [], "pages": {}}
    divs = compare_runs(TRACE, results(), snapshots(), results(), kernel)
    assert [(d.task, d.addr and hex(d.addr), d.field, d.model, d.kernel) for d in divs] == [
        ("a", P0, "vma", f"{P0}-{page(4)} rw", f"{P0}-{page(4)} rw locked"),
        ("b", P0, "page", "state=present frame=zero", "empty"),
        ("b", page(1), "mapcount", 2, 1),
        ("b", page(3), "page", "empty", "state=swap frame=s1"),
        ("c", None, "task", None, "live"),
    ]
    assert all(d.line == 5 and d.op == "snapshot" for d in divs)


def test_missing_results_and_snapshots_are_divergences():
    divs = compare_runs(TRACE, results(), snapshots(), results()[:3], [])
    assert [(d.line, d.field) for d in divs] == [(4, "result"), (5, "result"), (5, "snapshot")]


@pytest.mark.parametrize("stop", [{"op": "reclaim", "pages": 1},
                                  {"op": "madvise", "task": "a", "addr": P0, "pages": 1,
                                   "advice": "volatile"}], ids=["reclaim", "volatile"])
def test_comparison_stops_at_first_state_changing_model_only_op(stop):
    ops = parse([{"op": "spawn", "task": "a"},
                 {"op": "mmap", "task": "a", "addr": P0, "pages": 1, "prot": "rw"},
                 stop,
                 {"op": "read", "task": "a", "addr": P0, "pages": 1}])
    assert [op.line for op in compared_prefix(ops)] == [1, 2]
    same = [{"line": 1, "op": "spawn", "ok": True}, {"line": 2, "op": "mmap", "ok": True}]
    model = same + [{"line": 3, "op": stop["op"], "ok": True},
                    {"line": 4, "op": "read", "ok": True, "values": [0]}]
    kernel = same + [{"line": 3, "op": stop["op"], "ok": True, "skipped": True},
                     {"line": 4, "op": "read", "ok": True, "values": [1]}]
    assert compare_runs(ops, model, [], kernel, []) == []


def test_report_is_a_table_of_at_most_ten_rows():
    divs = [Divergence(7, "write", "b", 0x100000001000 + i * 4096, "frame", "f1", "f2")
            for i in range(13)]
    text = format_report(divs)
    lines = text.splitlines()
    assert lines[0].split() == ["line", "op", "task", "address", "field", "model", "kernel"]
    assert lines[1].split() == ["7", "write", "b", "0x100000001000", "frame", "f1", "f2"]
    assert len(lines) == 1 + 10 + 1 and lines[-1] == "... and 3 more"


def fake(res: list[dict], snaps: list[dict], calls: list | None = None):
    def run(ops):
        if calls is not None:
            calls.append([op.line for op in ops])
        return copy.deepcopy(res), copy.deepcopy(snaps)
    return run


def test_kernel_diff_statuses():
    out: list[str] = []
    same = fake(results(), snapshots())
    assert kernel_diff(TRACE, run_kernel=same, run_model=same, echo=out.append) == EQUAL
    assert "agree on 5 ops" in out[-1]
    other = results()
    other[2]["values"] = [1, 2, 3]
    assert kernel_diff(TRACE, run_kernel=same, run_model=fake(other, snapshots()),
                       echo=out.append) == DIFFER
    assert "0x100000000000" in out[-1] and "values[0]" in out[-1]


def test_kernel_disagreeing_with_itself_is_status_4_not_a_mismatch():
    answers = iter([(results(), snapshots()), (results(), [])])
    model_calls: list = []
    out: list[str] = []
    status = kernel_diff(TRACE, run_kernel=lambda ops: next(answers),
                         run_model=fake(results(), snapshots(), model_calls), echo=out.append)
    assert status == NONDETERMINISTIC
    assert "nondeterministic" in out[0] and "run 1" in out[1]
    assert model_calls == []


def test_kernel_runs_only_the_compared_prefix():
    ops = parse([{"op": "spawn", "task": "a"}, {"op": "reclaim", "pages": 1},
                 {"op": "exit", "task": "a"}])
    calls: list = []
    res = [{"line": 1, "op": "spawn", "ok": True}]
    out: list[str] = []
    assert kernel_diff(ops, run_kernel=fake(res, [], calls), run_model=fake(res, []),
                       echo=out.append) == EQUAL
    assert calls == [[1], [1]]
    assert "up to line 2" in out[-1]


def test_kernel_diff_invalid_trace_is_status_2(tmp_path, monkeypatch):
    monkeypatch.setattr("rmaplab.kernel.diff.kernel_diff",
                        lambda *a, **k: pytest.fail("an invalid trace must not run"))
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"op": "spawn", "task": "a"}\n{"op": "fork", "task": "zz", "child": "b"}\n')
    out = CliRunner().invoke(kcli.kernel_diff_cmd, [str(trace)])
    assert out.exit_code == 2 and "line 2" in out.output


@needs_kernel
@pytest.mark.parametrize("trace", recorded_traces()[:3], ids=lambda p: p.stem)
def test_kernel_diff_command_against_recorded_answers(trace: Path, monkeypatch):
    """The whole command on the kernel, with the recorded answers standing in for the model."""
    stem = trace.name[: -len(".jsonl")]
    recorded = (read_jsonl(trace.with_name(stem + ".results.jsonl")),
                read_jsonl(trace.with_name(stem + ".snapshots.jsonl")))
    monkeypatch.setattr("rmaplab.kernel.diff._model_runner",
                        lambda scheme: fake(*recorded))
    out = CliRunner().invoke(kcli.kernel_diff_cmd, [str(trace), "--wait-lock", str(LOCK_WAIT)])
    assert out.exit_code == 0, out.output
    # One wrong mapcount in the "model" must be found, and reported with its place.
    wrong = copy.deepcopy(recorded[1])
    task, state = next((t, s) for snap in wrong for t, s in snap["tasks"].items()
                       if any("mapcount" in p for p in s["pages"].values()))
    addr, pg = next((a, p) for a, p in state["pages"].items() if "mapcount" in p)
    pg["mapcount"] += 5
    monkeypatch.setattr("rmaplab.kernel.diff._model_runner",
                        lambda scheme: fake(recorded[0], wrong))
    out = CliRunner().invoke(kcli.kernel_diff_cmd, [str(trace), "--wait-lock", str(LOCK_WAIT)])
    assert out.exit_code == 1, out.output
    assert addr in out.output and "mapcount" in out.output and task in out.output


def test_divergence_rows_show_absent_values():
    d = Divergence(3, "read", None, None, "result", None, json.dumps({"ok": True}))
    assert d.row()[:4] == ["3", "read", "-", "-"] and d.row()[5] == "(absent)"


@needs_kernel
@pytest.mark.parametrize("seed", range(12))
def test_random_trace_every_scheme_agrees_with_the_running_kernel(seed: int):
    """The strongest check there is: a random kernel-only trace (fork, COW,
    VMA surgery, mlock, madvise, swap with a small area on odd seeds) run on
    this machine's kernel twice and in the model under every rmap scheme,
    the invariant checker on after every op. Results and snapshots must be
    equal (anonmm up to its documented early copy, docs/divergences.md 7).
    """
    from rmaplab.gentrace import generate_trace
    from rmaplab.kernel.runner import run_on_kernel
    from rmaplab.rmap import SCHEMES
    from rmaplab.trace import parse_trace_lines

    from scheme_util import replay_until_divergence

    ops = parse_trace_lines(generate_trace(2000 + seed, 200, kernel_only=True,
                                           swap_pages=32 if seed % 2 else 256))
    first = run_on_kernel(ops, wait_lock=LOCK_WAIT)
    second = run_on_kernel(ops, wait_lock=LOCK_WAIT)
    again = compare_runs(ops, *first, *second)
    assert not again, "the kernel disagreed with itself:\n" + format_report(again)
    for scheme in SCHEMES:
        results, snapshots = replay_until_divergence(ops, scheme)
        done = ops[:len(results)]
        if scheme != "anonmm":
            assert len(done) == len(ops)
        divs = compare_runs(done, results, snapshots, *first)
        assert not divs, f"{scheme}, seed {2000 + seed}:\n" + format_report(divs)
