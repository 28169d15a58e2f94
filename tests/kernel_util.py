# SPDX-License-Identifier: GPL-2.0-only
"""Helpers for the tests that run traces on the real kernel.

``needs_kernel`` skips a test, with the reason, on a machine where kernel
runs cannot work (not root, /proc files missing, another swap area active);
the other helpers run small inline traces and pick snapshots apart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rmaplab.consts import WINDOW_START
from rmaplab.kernel.observe import KernelUnavailable, Observer, preflight
from rmaplab.kernel.runner import run_on_kernel
from rmaplab.kernel.swap import SWAP_DIR_PREFIX, active_swaps

TRACES = Path(__file__).resolve().parent / "traces"
#: A run already in progress elsewhere is waited for, not failed on.
LOCK_WAIT = 120.0


def kernel_skip_reason() -> str | None:
    """Why kernel runs cannot work here, or None when they can."""
    if os.geteuid() != 0:
        return "kernel runs need root (frame numbers in pagemap, kpagecount, swapon)"
    try:
        preflight()
        Observer().close()
    except KernelUnavailable as exc:
        return f"kernel runs cannot work here: {exc}"
    # Another rmaplab run's own area is fine (we wait for its lock); any other is not.
    foreign = [s for s in active_swaps() if SWAP_DIR_PREFIX not in s]
    if foreign:
        return f"a swap area is active ({', '.join(foreign)}); kernel runs refuse to run"
    return None


SKIP_REASON = kernel_skip_reason()


def needs_kernel(test: Any) -> Any:
    """Mark a test ``kernel`` and skip it, with the reason, where kernel runs cannot work."""
    test = pytest.mark.kernel(test)
    return pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")(test)


def parse(lines: list[str | dict[str, Any]]) -> list[Any]:
    """Validate an inline trace (dicts or JSON text), as the real loader does."""
    from rmaplab.trace import parse_trace_lines
    return parse_trace_lines([x if isinstance(x, str) else json.dumps(x) for x in lines])


def run(lines: list[str | dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    return run_on_kernel(parse(lines), wait_lock=LOCK_WAIT)


def page(n: int) -> str:
    """Address of page ``n`` of the trace window, as traces and snapshots write it."""
    return hex(WINDOW_START + n * 4096)


def pages(snap: dict, task: str) -> dict[int, tuple]:
    """page number -> (frame, mapcount) or ("swap", frame), for one task of a snapshot."""
    out: dict[int, tuple] = {}
    for addr, p in snap["tasks"][task]["pages"].items():
        n = (int(addr, 16) - WINDOW_START) // 4096
        out[n] = ("swap", p["frame"]) if p["state"] == "swap" else (p["frame"], p.get("mapcount"))
    return out


def vmas(snap: dict, task: str) -> list[tuple[int, int, str, bool]]:
    """(first page, end page, prot, locked) of each VMA of one task."""
    def pg(addr: str) -> int:
        return (int(addr, 16) - WINDOW_START) // 4096

    return [(pg(v["start"]), pg(v["end"]), v["prot"], v["locked"])
            for v in snap["tasks"][task]["vmas"]]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def recorded_traces() -> list[Path]:
    return sorted(p for p in TRACES.glob("*.jsonl")
                  if not p.name.endswith((".results.jsonl", ".snapshots.jsonl")))


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, start time) of a live process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    close = stat.rindex(")")
    fields = stat[close + 2:].split()
    return stat[stat.index("(") + 1:close], int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, tuple[str, int, int]]:
    """Every live descendant of ``root``: pid -> proc_stat()."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                table[int(entry)] = st
    out: dict[int, tuple[str, int, int]] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, st in table.items() if st[1] in frontier and pid not in out}
        out.update((pid, table[pid]) for pid in frontier)
    return out
