# SPDX-License-Identifier: GPL-2.0-only
"""Comparing two runs of one trace: the model against the kernel, or the kernel
against itself.

compare_runs() is pure: it takes the ops and both sides' results and
snapshots (docs/trace-format.md shapes) and lists every Divergence, in trace
order, up to (not including) the first model-only op that can change state
(``reclaim``, ``madvise volatile``): past it the model is on its own.
Within a snapshot, divergences come in the snapshot's own order: tasks by
name, then each task's VMAs and pages by address.

kernel_diff() is what ``rmaplab kernel-diff`` runs: the kernel twice (two
answers that differ mean the trace is nondeterministic on this kernel, which
is never blamed on the model), then the model once, then the comparison.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..consts import PAGE_SIZE
from ..replay import replay  # the model's own entry point
from ..trace import Op
from . import runner  # run_on_kernel is looked up at call time: tests replace it

#: Divergences shown in a report; the first one is usually the cause, the
#: rest mostly its echoes (frame names shift once one frame differs).
REPORT_LIMIT = 10

EQUAL, DIFFER, NONDETERMINISTIC = 0, 1, 4


@dataclass(slots=True, frozen=True)
class Divergence:
    """One place where two runs disagree."""

    line: int
    op: str
    task: str | None
    addr: int | None
    field: str
    model: Any
    kernel: Any

    def as_dict(self, left: str = "model", right: str = "kernel") -> dict[str, Any]:
        """The divergence as a JSON object (``--json``), the two sides named."""
        return {"line": self.line, "op": self.op, "task": self.task,
                "address": hex(self.addr) if self.addr is not None else None,
                "field": self.field, left: self.model, right: self.kernel}

    def row(self) -> list[str]:
        return [str(self.line), self.op, self.task or "-",
                hex(self.addr) if self.addr is not None else "-",
                self.field, _show(self.model), _show(self.kernel)]


def _show(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compared_prefix(ops: Sequence[Op]) -> list[Op]:
    """The ops a comparison covers: those before the first state-changing model-only op."""
    out = []
    for op in ops:
        if op.model_only:
            break
        out.append(op)
    return out


def _result_divergences(op: Op, m: dict | None, k: dict | None) -> list[Divergence]:
    if m is None or k is None:
        return [Divergence(op.line, op.op, op.task, op.addr, "result",
                           _show(m) if m else None, _show(k) if k else None)]
    out = []
    # Only a read's values get the per-page comparison below.
    keys = sorted((set(m) | set(k)) - {"line", "op"} - ({"values"} if op.op == "read" else set()))
    for key in keys:
        if m.get(key) != k.get(key):
            out.append(Divergence(op.line, op.op, op.task, op.addr, key, m.get(key), k.get(key)))
    if op.op == "read":
        # A faulting read with nothing read before the fault may leave out
        # "values"; that and [] mean the same.
        mv, kv = m.get("values") or [], k.get("values") or []
        if mv != kv:
            common = min(len(mv), len(kv))
            i = next((j for j in range(common) if mv[j] != kv[j]), common)
            addr = None if op.addr is None else op.addr + i * PAGE_SIZE
            out.append(Divergence(op.line, op.op, op.task, addr, f"values[{i}]",
                                  mv[i] if i < len(mv) else None,
                                  kv[i] if i < len(kv) else None))
    return out


def _vma_text(v: dict | None) -> str | None:
    if v is None:
        return None
    return f"{v['start']}-{v['end']} {v['prot']}" + (" locked" if v.get("locked") else "")


def _snapshot_divergences(op: Op, m: dict | None, k: dict | None) -> list[Divergence]:
    def div(task: str | None, addr: int | None, field: str, mv: Any, kv: Any) -> Divergence:
        return Divergence(op.line, op.op, task, addr, field, mv, kv)

    if m is None or k is None:
        return [div(None, None, "snapshot", "taken" if m else None, "taken" if k else None)]
    out = []
    if m.get("label") != k.get("label"):
        out.append(div(None, None, "label", m.get("label"), k.get("label")))
    mt, kt = m.get("tasks", {}), k.get("tasks", {})
    for task in sorted(set(mt) | set(kt)):
        if task not in mt or task not in kt:
            out.append(div(task, None, "task", "live" if task in mt else None,
                           "live" if task in kt else None))
            continue
        mv = {v["start"]: v for v in mt[task].get("vmas", [])}
        kv = {v["start"]: v for v in kt[task].get("vmas", [])}
        for start in sorted(set(mv) | set(kv), key=lambda s: int(s, 16)):
            if mv.get(start) != kv.get(start):
                out.append(div(task, int(start, 16), "vma",
                               _vma_text(mv.get(start)), _vma_text(kv.get(start))))
        mp, kp = mt[task].get("pages", {}), kt[task].get("pages", {})
        for addr in sorted(set(mp) | set(kp), key=lambda s: int(s, 16)):
            a, b = mp.get(addr), kp.get(addr)
            if a == b:
                continue
            if a is None or b is None:
                out.append(div(task, int(addr, 16), "page", _show(a) if a else "empty",
                               _show(b) if b else "empty"))
                continue
            for key in ("state", "frame", "mapcount"):
                if a.get(key) != b.get(key):
                    out.append(div(task, int(addr, 16), key, a.get(key), b.get(key)))
    return out


def compare_runs(ops: Sequence[Op], model_results: Sequence[dict],
                 model_snapshots: Sequence[dict], kernel_results: Sequence[dict],
                 kernel_snapshots: Sequence[dict], *, limit: int = 1000) -> list[Divergence]:
    """Every divergence between two runs of ``ops``, in trace order (at most ``limit``).

    Results are matched by trace line, snapshots by their order among the
    ``snapshot`` ops.  Only the compared_prefix() of the trace counts.
    """
    mres = {r.get("line"): r for r in model_results}
    kres = {r.get("line"): r for r in kernel_results}
    out: list[Divergence] = []
    nsnap = 0
    for op in compared_prefix(ops):
        out.extend(_result_divergences(op, mres.get(op.line), kres.get(op.line)))
        if op.op == "snapshot":
            m = model_snapshots[nsnap] if nsnap < len(model_snapshots) else None
            k = kernel_snapshots[nsnap] if nsnap < len(kernel_snapshots) else None
            nsnap += 1
            out.extend(_snapshot_divergences(op, m, k))
        if len(out) >= limit:
            return out[:limit]
    return out


def format_report(divs: Sequence[Divergence], *, left: str = "model", right: str = "kernel",
                  limit: int = REPORT_LIMIT) -> str:
    """A readable table of the first ``limit`` divergences."""
    header = ["line", "op", "task", "address", "field", left, right]
    rows = [d.row() for d in divs[:limit]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    more = len(divs) - len(rows)
    if more > 0:
        lines.append(f"... and {more}{'+' if len(divs) >= 1000 else ''} more")
    return "\n".join(lines)


def kernel_diff(ops: list[Op], *, scheme: str | None = None,
                echo: Callable[[str], None] = print,
                run_kernel: Callable[[list[Op]], tuple[list[dict], list[dict]]] | None = None,
                run_model: Callable[[list[Op]], tuple[list[dict], list[dict]]] | None = None,
                as_json: bool = False) -> int:
    """Run the kernel twice and the model once on ``ops``; report; return the exit status.

    ``run_kernel``/``run_model`` replace the real runs in tests; ``as_json``
    echoes one JSON document (verdict and every divergence) instead of the table.
    """
    prefix = compared_prefix(ops)
    if run_kernel is None:
        run_kernel = runner.run_on_kernel
    if run_model is None:
        run_model = _model_runner(scheme)
    cut = "" if len(prefix) == len(ops) else \
        f" (up to line {ops[len(prefix)].line}, the first model-only op)"
    # The kernel runs only the compared prefix: what follows is the model's alone.
    first = run_kernel(prefix)
    second = run_kernel(prefix)
    divs = compare_runs(prefix, *first, *second)

    def document(verdict: str, left: str, right: str) -> str:
        return json.dumps({"verdict": verdict, "scheme": scheme, "ops": len(ops),
                           "compared_ops": len(prefix),
                           "compared_up_to_line": ops[len(prefix)].line if cut else None,
                           "divergences": [d.as_dict(left, right) for d in divs]}, indent=2)

    if divs and as_json:
        echo(document("nondeterministic", "run_1", "run_2"))
        return NONDETERMINISTIC
    if divs:
        echo(f"kernel-diff: the kernel gave two different answers{cut}: the trace is "
             "nondeterministic here, not a model mismatch. First differences:")
        echo(format_report(divs, left="run 1", right="run 2"))
        return NONDETERMINISTIC
    model_results, model_snapshots = run_model(ops)
    divs = compare_runs(prefix, model_results, model_snapshots, *first)
    name = f"model ({scheme})" if scheme else "model"
    if as_json:
        echo(document("differ" if divs else "agree", "model", "kernel"))
        return DIFFER if divs else EQUAL
    if divs:
        echo(f"kernel-diff: {name} and kernel differ{cut}, {len(divs)}"
             f"{'+' if len(divs) >= 1000 else ''} divergence(s); first ones:")
        echo(format_report(divs))
        return DIFFER
    echo(f"kernel-diff: {name} and kernel agree on {len(prefix)} ops{cut}.")
    return EQUAL


def _model_runner(scheme: str | None) -> Callable[[list[Op]], tuple[list[dict], list[dict]]]:
    def run(ops: list[Op]) -> tuple[list[dict], list[dict]]:
        out = replay(ops, scheme=scheme) if scheme else replay(ops)
        return list(out.results), list(out.snapshots)

    return run
