# SPDX-License-Identifier: GPL-2.0-only
"""One self-contained HTML page out of a results store.

For each experiment in the store: its plots (the experiment's own Plot
specs, drawn with matplotlib and inlined as SVG), its claims beside our
numbers, a table of every point (the mean over repeats), the parameters,
and the points that failed with their errors; then the sweeps (spec hash,
grid) and the runs (rmaplab, Python, library versions, scheduler). No
script, no stylesheet or font from elsewhere: the page opens offline.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .experiments import Experiment, Plot, experiments
from .plotstyle import SCHEME_STYLE
from .references import cite
from .store import Store, StoreError, json_object, replacing, same_file

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #222; max-width: 1150px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 19px; margin-top: 32px;
  border-bottom: 1px solid #ccc; padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plot { width: 540px; } .plot svg { width: 540px; height: auto; display: block; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0 12px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.claim { background: #f7f7f7; border-left: 3px solid #999; padding: 6px 10px; margin: 8px 0;
  font-size: 13px; } .err { color: #a00; font-family: monospace; text-align: left; }
code { font-size: 12px; }
"""


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _sortable(v: object) -> tuple[int, Any, str]:
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def _plottable(v: object) -> bool:
    """A finite number a float can hold (a results file may hold anything)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def find_experiment(store: Store, name: str) -> Experiment | None:
    """The experiment's definition if it is registered in this rmaplab.

    A results file is data: the ``module:ATTR`` a sweep recorded is shown,
    never imported (opening someone's file must not run their code)."""
    del store  # what the store says about the experiment is not trusted
    return experiments().get(name)


def aggregate(records: list[dict[str, Any]], params: list[str]) -> list[dict[str, Any]]:
    """One record per (scheme, parameters): numeric metrics averaged over the
    repeats, with ``repeats`` and ``wall_s_sd``; plus ``_runs``: the raw ones."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["scheme"], *(json.dumps(r.get(k)) for k in params))].append(r)
    out = []
    for recs in groups.values():
        agg: dict[str, Any] = {}
        for k in dict.fromkeys(k for r in recs for k in r):
            vals = [r.get(k) for r in recs]
            nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if k in params or k == "scheme" or len(nums) != len(vals) or not nums:
                agg[k] = vals[0]
            elif all(isinstance(v, int) for v in nums) and len(set(nums)) == 1:
                agg[k] = nums[0]
            else:
                try:
                    agg[k] = statistics.fmean(nums)
                except OverflowError:  # integers past a float's range
                    agg[k] = vals[0]
        walls = [r["wall_s"] for r in recs if isinstance(r.get("wall_s"), (int, float))]
        agg["repeats"] = len(recs)
        agg["wall_s_sd"] = statistics.stdev(walls) if len(walls) > 1 else 0.0
        agg["_runs"] = recs
        out.append(agg)
    return out


def plot_svg(exp_title: str, spec: Plot, points: list[dict[str, Any]],
             varying: list[str]) -> str | None:
    """One plot as inline SVG text; None when its metric is not in the records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter

    pts = [p for p in points if _plottable(p.get(spec.y)) and _plottable(p.get(spec.x))]
    if not pts:
        return None
    others = [k for k in varying if k not in (spec.x, spec.series)]

    def label(p: dict[str, Any]) -> str:
        return ", ".join([str(p.get(spec.series))] + [f"{k}={p.get(k)}" for k in others])

    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in pts:
        series[label(p)].append(p)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    markers, styles = "os^Dv<>PX", ("-", "--", ":", "-.")
    for n, name in enumerate(sorted(series)):
        look: dict[str, Any] = {
            "marker": markers[n % len(markers)], "linestyle": styles[n % len(styles)],
            "markersize": 7 - 0.6 * (n % 5), "label": name}
        if spec.series == "scheme":  # a scheme's own colour and marker, as everywhere
            look.update(SCHEME_STYLE.get(str(series[name][0].get("scheme")), {}))
        rows = sorted(series[name], key=lambda p: p[spec.x])
        xs = [p[spec.x] for p in rows]
        ys = [p[spec.y] for p in rows]
        runs = [[r[spec.y] for r in p["_runs"] if _plottable(r.get(spec.y))]
                for p in rows]
        if any(len(r) > 1 for r in runs):
            # the mean of equal repeats can round past them: never a negative bar
            lo = [max(0.0, y - min(r)) if r else 0.0 for y, r in zip(ys, runs)]
            hi = [max(0.0, max(r) - y) if r else 0.0 for y, r in zip(ys, runs)]
            ax.errorbar(xs, ys, yerr=[lo, hi], capsize=3, **look)
        else:
            ax.plot(xs, ys, **look)
    ax.set_xlabel(spec.xlabel)
    ax.set_ylabel(spec.ylabel)
    for log, axis, setter in ((spec.logx, ax.xaxis, ax.set_xscale),
                              (spec.logy, ax.yaxis, ax.set_yscale)):
        if log:
            setter("log")
            axis.set_major_formatter(LogFormatter())  # 100, not 10^2
            axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    ax.set_title(exp_title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(title=" / ".join([spec.series, *others]), fontsize=8)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # the RDF metadata names web addresses; nothing here is fetched, but say nothing of them
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)


def _table(head: list[str], rows: list[list[object]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_e(_fmt(v))}</td>'
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _section(store: Store, name: str) -> str:
    exp = find_experiment(store, name)
    ok = store.records(name, status="ok")
    failed = store.records(name, status="failed")
    title = exp.title if exp else name
    parts = [f'<h2 id="{_e(name)}">{_e(name)}: {_e(title)}</h2>']
    meta_keys = {"experiment", "scheme", "repeat", "wall_s", "status", "error", "version",
                 "spec_hash", "finished_at", "attempts", "worker"}
    params = list(exp.params) if exp is not None else store.params_of(name)
    points = aggregate(ok, params)
    varying = [k for k in params if len({json.dumps(p.get(k)) for p in points}) > 1]
    fixed = {k: points[0].get(k) for k in params if k not in varying} if points else {}
    schemes = ", ".join(sorted({str(p["scheme"]) for p in points}))
    fixed_text = ", ".join(f"{k}={v}" for k, v in fixed.items())
    parts.append(f'<p class="meta">{len(ok)} ok runs of {len(points)} points, '
                 f"{len(failed)} failed; schemes {_e(schemes)}"
                 + (f"; fixed: {_e(fixed_text)}" if fixed else "")
                 + (f'; see <code>{_e(exp.doc)}</code>' if exp and exp.doc else "") + "</p>")
    if exp is None:
        parts.append('<p class="meta">Experiment unknown to this rmaplab (not registered; '
                     "a results file's module names are never imported): what is stored, "
                     "no plots, every metric in the table.</p>")
    svgs = []
    for spec in (exp.plots if exp else []):
        svg = plot_svg(title, spec, points, varying)
        if svg:
            svgs.append(f'<div class="plot">{svg}</div>')
    if svgs:
        parts.append('<div class="plots">' + "".join(svgs) + "</div>")
    if exp is not None and points:
        for claim in exp.claims:
            recs = [{k: v for k, v in p.items() if k != "_runs"} for p in points]
            try:
                ours = claim.ours(recs)
                verdict = claim.verdict(recs, exp.doc)
            except Exception as e:  # noqa: BLE001 - a claim over a partial grid
                ours = f"(not computable from these points: {type(e).__name__}: {e})"
                verdict = "undecided"
            parts.append(f'<div class="claim"><b>{_e(claim.text)}</b><br>'
                         f"source: {_e(cite(claim.ref))}<br>"
                         f"published: {_e(claim.published)}<br>rmaplab: {_e(ours)}<br>"
                         f"verdict: <b>{_e(verdict)}</b></div>")
    if points:
        if exp is not None:
            cols = [c for c in exp.columns if c != "wall_s"]
        else:
            cols = [k for k in dict.fromkeys(k for p in points for k in p)
                    if k not in meta_keys and k not in params and k not in ("repeats", "wall_s_sd",
                                                                            "_runs")]
        head = ["scheme", *varying, *cols, "repeats", "wall_s", "wall_s sd"]
        rows = [[p["scheme"], *(p.get(k) for k in varying), *(p.get(c) for c in cols),
                 p["repeats"], p.get("wall_s"), p["wall_s_sd"]]
                for p in sorted(points, key=lambda p: (str(p["scheme"]), *(_sortable(p.get(k))
                                                                       for k in varying)))]
        parts.append("<h3>Points (mean over repeats)</h3>" + _table(head, rows))
    if failed:
        rows = [[f["scheme"], ", ".join(f"{k}={f.get(k)}" for k in params), f["repeat"],
                 f["attempts"], f["error"]] for f in failed]
        parts.append("<h3>Failed points</h3>"
                     + _table(["scheme", "parameters", "repeat", "attempts", "error"], rows, 5))
    return "\n".join(parts)


def build_report(store: Store) -> str:
    """The whole page as one HTML string."""
    names = store.experiments()
    counts = store.counts()
    sections = [_section(store, n) for n in names]
    sweeps = store.sweeps()
    sweep_rows = []
    for s in sweeps:
        spec = json_object(s["spec"], f"{store.path}: sweep {str(s['spec_hash'])[:12]}: spec")
        params = spec.get("params")
        grid = ("; ".join(f"{k} = {v}" for k, v in params.items())
                if isinstance(params, dict) else str(params))
        schemes = spec.get("schemes")
        sweep_rows.append([str(s["spec_hash"])[:12], s["experiment_ref"],
                           ", ".join(map(str, schemes)) if isinstance(schemes, list)
                           else str(schemes), grid, spec.get("repeats"), s["description"],
                           s["first_seen"]])
    run_rows = []
    for r in store.runs():
        libs = ", ".join(f"{k} {v}" for k, v in json_object(
            r["libraries"], f"{store.path}: run {r['id']}: libraries").items())
        run_rows.append([r["id"], str(r["spec_hash"])[:12], r["started_at"],
                         r["ended_at"] or "(killed)", r["outcome"] or "", r["done"], r["failed"],
                         r["version"], f"Python {r['python']}", libs, r["platform"],
                         r["scheduler"]])
    versions = sorted({str(v[0]) for v in store.db.execute("SELECT DISTINCT version FROM points")})
    toc = " · ".join(f'<a href="#{_e(n)}">{_e(n)}</a>' for n in names)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rmaplab report: {_e(Path(store.path).name)}</title>
<style>{CSS}</style></head>
<body>
<h1>rmaplab report</h1>
<p class="meta">{_e(store.path)}: {counts.get("ok", 0)} ok points, {counts.get("failed", 0)}
failed; results by rmaplab {_e(", ".join(versions) or "-")}; this page by rmaplab
{_e(__version__)} on {_e(datetime.now().astimezone().isoformat(timespec="seconds"))}.
{("Experiments: " + toc) if toc else "The store holds no points yet."}</p>
{"".join(sections)}
<h2 id="sweeps">Sweeps and their parameters</h2>
{_table(["spec", "experiment", "schemes", "grid", "repeats", "description", "first run"],
        sweep_rows, 7)}
<h2 id="runs">Runs and versions</h2>
{_table(["run", "spec", "started", "ended", "outcome", "done", "failed", "rmaplab", "python",
         "libraries", "platform", "scheduler"], run_rows, 12)}
</body></html>
"""


def write_report(store: Store | str | Path, path: str | Path) -> Path:
    """Write the HTML page for a store (or a results file path)."""
    if not isinstance(store, Store):
        with Store(store, readonly=True) as s:
            return write_report(s, path)
    out = Path(path)
    text = build_report(store)
    with replacing(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out


def check_outputs(db: str | Path, outputs: list[str | Path]) -> None:
    """Refuse an output that is the results file (or its WAL files), or
    two outputs that are one file: StoreError, before anything is written."""
    inputs = [Path(str(db) + suffix) for suffix in ("", "-wal", "-shm")]
    for n, out in enumerate(outputs):
        for inp in inputs:
            if same_file(out, inp):
                raise StoreError(f"{out}: is the results file being reported on; "
                                 "give another output file")
        for other in outputs[:n]:
            if same_file(out, other):
                raise StoreError(f"{out}: named for two outputs; give each its own file")
