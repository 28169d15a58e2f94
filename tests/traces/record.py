#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Re-record the expected kernel answers of the hand-written traces here.

For each NAME.jsonl in this directory (or those named on the command line)
this runs ``kernel-run`` twice, as root, and writes NAME.results.jsonl and
NAME.snapshots.jsonl only when both runs agree: a trace the kernel answers
differently from run to run is no reference.  The model replays these files
in CI, where there is no root.

    sudo .venv/bin/python tests/traces/record.py [NAME.jsonl ...]

The merge_mremap_* traces are written by merge_selftests.py (translated
from the kernel's VMA-merge selftests); re-run it before recording them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def traces(names: list[str]) -> list[Path]:
    found = [Path(n).resolve() for n in names] if names else sorted(HERE.glob("*.jsonl"))
    # A shell glob over this directory names the recorded answers too: skip them.
    return [p for p in found if not p.name.endswith((".results.jsonl", ".snapshots.jsonl"))]


def kernel_run(trace: Path, out: Path) -> tuple[str, str]:
    """Run ``kernel-run`` on ``trace``; return (results, snapshots) text."""
    res, snap = out / "results.jsonl", out / "snapshots.jsonl"
    # The standalone entry point needs only the kernel runner, not the model.
    cmd = [sys.executable, "-m", "rmaplab.kernel.cli", "kernel-run", str(trace),
           "--results", str(res), "--snapshots", str(snap), "--wait-lock", "120"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{trace.name}: kernel-run exited {proc.returncode}:\n{proc.stderr}")
    return res.read_text(), snap.read_text()


def main(argv: list[str]) -> int:
    status = 0
    for trace in traces(argv):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            first = kernel_run(trace, Path(a))
            second = kernel_run(trace, Path(b))
        if first != second:
            print(f"{trace.name}: the kernel answered differently on two runs; not recorded")
            status = 1
            continue
        stem = trace.name[: -len(".jsonl")]
        (trace.parent / f"{stem}.results.jsonl").write_text(first[0])
        (trace.parent / f"{stem}.snapshots.jsonl").write_text(first[1])
        print(f"{trace.name}: recorded")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
