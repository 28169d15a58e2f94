# SPDX-License-Identifier: GPL-2.0-only
"""Every experiment's plots show every series: each scheme's line is drawn,
in its own colour and marker (the same in every plot), and two series that
coincide are drawn differently and labelled as equal; categories keep their
natural order, log axes are ticked at the measured values, titles differ,
and a claim's published value is drawn as a reference line."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from small_grids import SMALL

from rmaplab.experiments import experiments, run_experiment
from rmaplab.experiments.plots import figure, lines, plot
from rmaplab.plotstyle import SCHEME_STYLE
from rmaplab.rmap import SCHEMES


@pytest.fixture(scope="module")
def runs() -> dict[str, list[dict]]:
    out = {}
    for name, exp in experiments().items():
        schemes = None if exp.schemes else list(SCHEMES)
        out[name] = run_experiment(exp, schemes=schemes, params=SMALL[name], progress=False)
    return out


def _look(line: Line2D) -> tuple:
    return (str(line.get_linestyle()), line.get_marker(), line.get_markersize(),
            str(line.get_markerfacecolor()), line.get_linewidth())


def _legend(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_series_is_visible(runs: dict[str, list[dict]], name: str) -> None:
    exp = experiments()[name]
    assert exp.plots, name
    for spec in exp.plots:
        series = lines(exp, spec, runs[name])
        fig = figure(exp, spec, runs[name])
        ax = fig.axes[0]
        drawn: dict[str, list[Line2D]] = {}
        for line in ax.get_lines():
            if line.get_gid() and line.get_gid() != "reference" and len(line.get_xdata()):
                assert line.get_visible() and (line.get_alpha() or 1) > 0
                drawn.setdefault(line.get_gid(), []).append(line)
        want = {s["label"] for s in series}
        assert want and set(drawn) == want, (spec.y, want, set(drawn))
        if spec.kind == "bar":
            bars = {p.get_gid() for p in ax.patches if isinstance(p, Rectangle)}
            assert bars == want
        for s in series:
            line = drawn[s["label"]][0]
            if spec.series == "scheme":  # a scheme's own colour and marker, every plot
                style = SCHEME_STYLE[s["series"]]
                assert line.get_color() == style["color"] and line.get_marker() == style["marker"]
            if s["same_as"] is not None:  # drawn over another: told apart, and said so
                first = drawn[s["same_as"]][0]
                assert _look(line) != _look(first)
                assert line.get_markersize() > first.get_markersize()
                assert f"{s['label']} = {s['same_as']}" in _legend(fig)
        looks = [(_look(drawn[s["label"]][0]), drawn[s["label"]][0].get_color()) for s in series]
        assert len(set(looks)) == len(looks), f"{spec.y}: two series look the same"


def test_coinciding_lines_are_found_and_labelled(runs: dict[str, list[dict]]) -> None:
    exp = experiments()["aim7"]
    spec = next(p for p in exp.plots if p.y == "listed_avg")
    recs = [r for r in runs["aim7"] if r["cow"] == 1.0]  # the claim's grid
    same = {s["label"]: s["same_as"] for s in lines(exp, spec, recs)}
    # anon_vma and anonmm list every VMA of the family; modern and anon_vma_chain agree
    assert same == {"modern": None, "anon_vma_chain": "modern", "anon_vma": None,
                    "anonmm": "anon_vma", "pte_chain": None}
    legend = _legend(figure(exp, spec, recs))
    assert "anonmm = anon_vma" in legend and "anon_vma_chain = modern" in legend


def test_titles_differ() -> None:
    titles = [p.title for e in experiments().values() for p in e.plots]
    assert all(titles) and len(set(titles)) == len(titles)


def test_axes_in_natural_order_and_base_2(runs: dict[str, list[dict]]) -> None:
    def ticks(name: str, k: int = 0) -> list[str]:
        exp = experiments()[name]
        ax = figure(exp, exp.plots[k], runs[name]).axes[0]
        return [t.get_text() for t in ax.get_xticklabels()]

    assert ticks("allocator") == ["none", "low", "high"]
    assert ticks("race") == ["removed (0)", "kept (1)"]  # a flag is a category
    assert ticks("contention") == ["1", "2"] and ticks("kbuild") == ["1", "2"]
    exp = experiments()["contention"]
    fig = figure(exp, exp.plots[0], runs["contention"])
    by_scheme: dict[str, set[str]] = {}
    for line in fig.axes[0].get_lines():
        if line.get_gid():
            scheme = line.get_gid().split(" ")[0]
            by_scheme.setdefault(scheme, set()).add(str(line.get_linestyle()))
            assert line.get_color() == SCHEME_STYLE[scheme]["color"]  # colour = scheme
    assert all(len(styles) == 2 for styles in by_scheme.values())  # line style = N


def test_kbuild_plots_the_claimed_ratio_with_the_published_line(
        runs: dict[str, list[dict]]) -> None:
    exp = experiments()["kbuild"]
    spec = exp.plots[0]
    assert spec.y == "avc_to_vma_bytes"
    ax = figure(exp, spec, runs["kbuild"]).axes[0]
    ref = [ln for ln in ax.get_lines() if ln.get_gid() == "reference"]
    assert len(ref) == 1 and list(ref[0].get_ydata()) == [1 / 3, 1 / 3]
    assert {ln.get_gid() for ln in ax.get_lines()} == {"modern", "anon_vma_chain", "reference"}


def test_plot_writes_png_and_svg(runs: dict[str, list[dict]], tmp_path: Path) -> None:
    files = plot(experiments()["aim7"], runs["aim7"], tmp_path)
    assert sorted(f.name for f in files) == ["aim7-exit_cost_page.png", "aim7-exit_cost_page.svg",
                                             "aim7-listed_avg.png", "aim7-listed_avg.svg",
                                             "aim7-visited_avg.png", "aim7-visited_avg.svg"]
    assert files[0].read_bytes()[:4] == b"\x89PNG"
