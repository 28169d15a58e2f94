# SPDX-License-Identifier: GPL-2.0-only
"""The model replays the hand-written traces whose answers were recorded
from the running kernel (tests/traces/, re-recorded by record.py), through
``rmaplab replay`` under every scheme with the checker on. Needs no root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.kernel.diff import compare_runs, format_report
from rmaplab.rmap import SCHEMES
from rmaplab.trace import load_trace

HERE = Path(__file__).resolve().parent / "traces"
TRACES = sorted(p for p in HERE.glob("*.jsonl")
                if not p.name.endswith((".results.jsonl", ".snapshots.jsonl")))


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.stem)
def test_model_matches_recorded_kernel(trace: Path, scheme: str, tmp_path: Path) -> None:
    res, snaps = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    out = CliRunner().invoke(main, ["replay", str(trace), "--scheme", scheme, "--check",
                                    "--results", str(res), "--snapshots", str(snaps)])
    assert out.exit_code == 0, out.output
    kres = load_jsonl(trace.with_name(trace.stem + ".results.jsonl"))
    ksnap = load_jsonl(trace.with_name(trace.stem + ".snapshots.jsonl"))
    divs = compare_runs(load_trace(trace), load_jsonl(res), load_jsonl(snaps), kres, ksnap)
    assert not divs, "\n" + format_report(divs)


def test_corpus_is_not_empty() -> None:
    assert len(TRACES) >= 5
