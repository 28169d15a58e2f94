# SPDX-License-Identifier: GPL-2.0-only
"""An experiment's plots, drawn so that nothing hides.

Each scheme keeps its colour and marker from rmaplab.plotstyle. Series are
drawn in their natural order (the schemes' order, a parameter's own order:
pressure none, low, high). A series identical to one drawn before it is
drawn thinner, dashed, with a larger hollow marker round the first one's,
and its legend entry says which it equals ("anonmm = anon_vma"), so two
coinciding lines both show. Log axes are ticked at the measured values
(1, 2, 4, 8 CPUs) with plain numbers; a 0/1 parameter or a text one is a
category, not a continuous axis; the published value of a claim is a
horizontal reference line. matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..plotstyle import DASHES, series_style
from ..rmap import SCHEMES
from .base import Experiment, Plot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def natural_order(exp: Experiment, key: str, values: Sequence[object]) -> list[object]:
    """values in their natural order: the schemes' order, a parameter's
    choices or defaults, then any others sorted."""
    present = set(values)
    nums = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == len(present):
        return list(sorted(nums))
    known: Sequence[object] = (SCHEMES if key == "scheme"
                               else exp.choices.get(key) or exp.params.get(key) or ())
    first = [v for v in known if v in present]
    rest = sorted((v for v in present if v not in first), key=lambda v: (str(type(v)), v))
    return first + rest


def _same(a: list[tuple[Any, float]], b: list[tuple[Any, float]]) -> bool:
    return len(a) == len(b) and all(
        xa == xb and math.isclose(ya, yb, rel_tol=1e-9, abs_tol=1e-12)
        for (xa, ya), (xb, yb) in zip(a, b))


def _plain(v: float, _pos: object = None) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,g}"


def lines(exp: Experiment, spec: Plot, records: list[dict]) -> list[dict[str, Any]]:
    """The series of one plot: for each, its key values, label, style and points."""
    recs = [r for r in records if isinstance(r.get(spec.y), (int, float))
            and (spec.only is None or r.get(spec.series) in spec.only)
            and (spec.where is None or all(r.get(k) == v for k, v in spec.where.items()))]
    varying = [k for k in exp.params if k not in (spec.x, spec.series)
               and len({r.get(k) for r in recs}) > 1]
    if spec.dash and spec.dash not in varying:
        varying.insert(0, spec.dash)
    series_vals = natural_order(exp, spec.series, [r[spec.series] for r in recs])
    other_vals = [natural_order(exp, k, [r[k] for r in recs]) for k in varying]
    xorder = natural_order(exp, spec.x, [r[spec.x] for r in recs])
    out: list[dict[str, Any]] = []
    for n, combo in enumerate(itertools.product(*other_vals)):
        for s in series_vals:
            pts = [(r[spec.x], float(r[spec.y])) for r in recs if r[spec.series] == s
                   and all(r[k] == v for k, v in zip(varying, combo))]
            if not pts:
                continue
            pts.sort(key=lambda p: xorder.index(p[0]))
            style: dict[str, Any] = series_style(spec.series, s, series_vals)
            style["linestyle"] = DASHES[n % len(DASHES)]
            label = " ".join([str(s), *(f"{k}={v}" for k, v in zip(varying, combo))])
            out.append({"series": s, "others": dict(zip(varying, combo)), "label": label,
                        "style": style, "points": pts, "same_as": None})
    for k, line in enumerate(out if spec.kind == "line" else ()):  # bars stand side by side
        for before in out[:k]:
            if before["same_as"] is None and _same(before["points"], line["points"]):
                line["same_as"] = before["label"]
                break
    return out


def figure(exp: Experiment, spec: Plot, records: list[dict]) -> Figure:
    """One plot as a matplotlib Figure (no pyplot: nothing global)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 4.5), dpi=110)
    ax = fig.add_subplot()
    series = lines(exp, spec, records)
    xs = natural_order(exp, spec.x, [p[0] for s in series for p in s["points"]])
    categorical = spec.kind == "bar" or any(isinstance(x, str) for x in xs)
    if spec.kind == "bar":
        _bars(ax, series, xs, spec)
    else:
        _lines(ax, series, xs, categorical)
    if categorical:
        ax.set_xticks(range(len(xs)), [spec.xlabels.get(x, str(x)) for x in xs])
        ax.set_xlim(-0.5, len(xs) - 0.5)
    elif spec.logx:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        ax.set_xscale("log", base=2 if all(_pow2(x) for x in xs) else 10)
        ax.xaxis.set_major_locator(FixedLocator([float(x) for x in xs
                                                 if isinstance(x, (int, float))]))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        ax.xaxis.set_minor_locator(NullLocator())
    from matplotlib.ticker import FuncFormatter

    if spec.logy and spec.kind != "bar":
        ys = [p[1] for s in series for p in s["points"]]
        if ys and min(ys) > 0:
            ax.set_yscale("log")
        else:  # a zero would vanish from a log axis
            ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))  # 3,000,000 and 100, not 1e6 or 10^2
    if spec.logy:  # minor labels only when the axis spans about one decade
        from matplotlib.ticker import LogFormatter

        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    if spec.reference is not None:
        value, text = spec.reference
        ax.axhline(value, color="#555555", linestyle=(0, (6, 3)), linewidth=1.2, label=text,
                   gid="reference")
        if not spec.logy:  # the distance to the published value, to scale
            ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], value * 1.1))
    ax.set_xlabel(spec.xlabel)
    ax.set_ylabel(spec.ylabel)
    ax.set_title(spec.title or f"{exp.name}: {spec.ylabel}", fontsize=11)
    ax.grid(True, alpha=0.3)
    _legend(ax, spec, series)
    fig.tight_layout()
    return fig


def _legend(ax: Axes, spec: Plot, series: list[dict[str, Any]]) -> None:
    """Beside the axes, never over a line. With a dash parameter: the colours
    (series) and the line styles (its values) in two lists, not every pair."""
    from matplotlib.lines import Line2D

    where: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
                             "fontsize": 8, "borderaxespad": 0.0}
    others = list(series[0]["others"]) if series else []
    if spec.dash is None or spec.kind == "bar":
        ax.legend(title=" / ".join([spec.series, *others]), **where)
        return
    handles: list[Any] = []
    names: list[str] = []
    for s in series:
        if s["label"].split(" ")[0] not in names:
            st = s["style"]
            handles.append(Line2D([], [], color=st["color"], marker=st["marker"]))
            names.append(s["label"].split(" ")[0])
    for s in series:
        text = ", ".join(f"{k}={v}" for k, v in s["others"].items())
        if text not in names:
            handles.append(Line2D([], [], color="black", linestyle=s["style"]["linestyle"]))
            names.append(text)
    for s in series:
        if s["same_as"] is not None:
            handles.append(Line2D([], [], color=s["style"]["color"], linestyle=(0, (4, 3)),
                                  marker=s["style"]["marker"], markerfacecolor="none"))
            names.append(f"{s['label']} = {s['same_as']}")
    for line in ax.get_lines():
        if line.get_gid() == "reference":
            handles.append(line)
            names.append(str(line.get_label()))
    ax.legend(handles, names, title=f"{spec.series} (colour) / {', '.join(others)} (line)",
              **where)


def _pow2(x: object) -> bool:
    return isinstance(x, int) and x > 0 and x & (x - 1) == 0


def _lines(ax: Axes, series: list[dict[str, Any]], xs: list[object], categorical: bool) -> None:
    for s in series:
        st = dict(s["style"])
        label = s["label"]
        if s["same_as"] is not None:  # drawn over: thinner, dashed, a ring round the marker
            label = f"{label} = {s['same_as']}"
            # a ring size of its own among all drawn-over lines: their dashes are
            # replaced, so two of one scheme (a dash parameter) must still differ
            dups = sum(1 for t in series[:series.index(s)] if t["same_as"] is not None)
            st.update(linewidth=1.2, linestyle=(0, (4, 3)), markersize=10 + 3 * dups,
                      markerfacecolor="none", markeredgewidth=1.6, zorder=3 + dups)
        else:
            st.update(linewidth=2.2, markersize=7, zorder=2)
        px = [xs.index(p[0]) if categorical else p[0] for p in s["points"]]
        line, = ax.plot(px, [p[1] for p in s["points"]], label=label, **st)
        line.set_gid(s["label"])


def _bars(ax: Axes, series: list[dict[str, Any]], xs: list[object], spec: Plot) -> None:
    """Grouped bars, one colour per series, the value written on each; a
    marker on each bar's top keeps a zero bar visible."""
    n = max(len(series), 1)
    width = 0.8 / n
    top = max([p[1] for s in series for p in s["points"]] + [1.0])
    for k, s in enumerate(series):
        pos = [xs.index(p[0]) - 0.4 + width * (k + 0.5) for p in s["points"]]
        ys = [p[1] for p in s["points"]]
        st = s["style"]
        bars = ax.bar(pos, ys, width * 0.9, color=st["color"], label=s["label"], alpha=0.85)
        for b in bars:
            b.set_gid(s["label"])
        mark, = ax.plot(pos, ys, linestyle="none", marker=st["marker"], color=st["color"],
                        markeredgecolor="black", markersize=6, clip_on=False)
        mark.set_gid(s["label"])
        for x, y in zip(pos, ys):
            ax.annotate(_plain(y), (x, y), xytext=(0, 5), textcoords="offset points",
                        ha="center", fontsize=7)
    ax.set_ylim(0, top * 1.15)


def plot(exp: Experiment, records: list[dict], out: Path) -> list[Path]:
    """Every plot of exp as OUT/NAME-METRIC.png and .svg (OUT/NAME.* for one)."""
    files = []
    for spec in exp.plots:
        fig = figure(exp, spec, records)
        stem = out / f"{exp.name}-{spec.y}" if len(exp.plots) > 1 else out / exp.name
        for ext in ("png", "svg"):
            path = stem.with_suffix(f".{ext}")
            fig.savefig(path, metadata={"Date": None} if ext == "svg" else None)
            files.append(path)
    return files
