# SPDX-License-Identifier: GPL-2.0-only
"""What an experiment is: a named scenario, a parameter grid, and a claim.

An Experiment runs one point (a scheme and one value of each parameter) on
a fresh Machine and returns flat metrics. The runner (runner.py) sweeps the
grid, writes the records (CSV, Parquet), the table and the plots; the
claim says which published figure the numbers reproduce (its anchor in
docs/references.md, with its source in rmaplab/references.py), and how to
read ours next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..budget import Footprint, OverBudget, check


@dataclass(slots=True, kw_only=True)
class Claim:
    """A published figure and the metric of ours that answers it."""

    ref: str  # its anchor in docs/references.md (a key of references.SOURCES)
    text: str  # the claim, quoted or summarised
    published: str  # the published number, as published
    ours: Callable[[list[dict[str, Any]]], str]  # our number, from the records
    # True: ours reproduces the published figure; False: it differs (why is
    # on the page `explains`, default the experiment's own); None: the
    # records lack the schemes or parameters that decide it
    judge: Callable[[list[dict[str, Any]]], bool | None]
    explains: str = ""

    def verdict(self, records: list[dict[str, Any]], doc: str) -> str:
        """One word, and where a difference is explained: 'reproduced',
        'differs (see PAGE)' or 'undecided (...)'."""
        try:
            ok = self.judge(records)
        except (KeyError, ValueError, ZeroDivisionError):
            ok = None
        if ok is None:
            return "undecided (the schemes or parameters it needs were not run)"
        return "reproduced" if ok else f"differs (see {self.explains or doc})"


@dataclass(slots=True, kw_only=True)
class Plot:
    """One plot of a metric against a parameter (drawn by plots.py)."""

    x: str  # a parameter
    y: str  # a metric
    xlabel: str
    ylabel: str
    title: str = ""  # distinct per plot; default "NAME: ylabel"
    logx: bool = False
    logy: bool = False
    series: str = "scheme"  # one colour per value (a scheme's own colour)
    dash: str | None = None  # a parameter told apart by line style (same colour)
    kind: str = "line"  # or "bar": x is a category (a 0/1 flag)
    xlabels: dict[object, str] = field(default_factory=dict)  # tick label per x value
    only: Sequence[str] | None = None  # the series values the metric means something for
    where: dict[str, object] | None = None  # only the records with these parameter values
    reference: tuple[float, str] | None = None  # a published value: (y, legend text)


@dataclass(slots=True, kw_only=True)
class Experiment:
    name: str
    title: str
    params: dict[str, list]  # defaults; --param k=v1,v2 overrides
    run: Callable[[str, dict], dict]  # (scheme, params) -> metrics
    columns: Sequence[str]  # metrics shown in the table
    # a short table header and its meaning (with the unit) per metric column,
    # printed as a legend below the table (table.py); parameters' come from
    # param_help (column_legend)
    legend: dict[str, tuple[str, str]] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    schemes: Sequence[str] | None = None  # default schemes (None: all)
    doc: str = ""  # docs/experiments/<name>.md
    # What a point may ask for, checked for every point before any runs:
    # inclusive (low, high) per numeric parameter, the allowed values of a
    # text one, and a test of the whole point (sizes that together would not
    # fit the model's frames, say) returning what is wrong, or None.
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    choices: dict[str, Sequence[str]] = field(default_factory=dict)
    check: Callable[[dict], str | None] | None = None
    # What each parameter means, one line each (``--list-params``, ``--help``).
    param_help: dict[str, str] = field(default_factory=dict)
    # The counts a point's host memory grows with (rmaplab.budget), if known.
    footprint: Callable[[dict], Footprint] | None = None
    # run builds its machine with the point's era (era_of), so it can run
    # with --era historical (docs/eras.md); a point carries "era" only then
    era_mode: bool = False

    def problem(self, p: dict) -> str | None:
        """What is wrong with the parameters of one point, or None."""
        for key, (low, high) in self.limits.items():
            if not low <= p[key] <= high:
                return f"{key}={p[key]} is out of range: {_num(low)} to {_num(high)}"
        for key, allowed in self.choices.items():
            if p[key] not in allowed:
                return f"{key}={p[key]!r}: choose from {', '.join(map(str, allowed))}"
        return self.check(p) if self.check is not None else None

    def column_legend(self) -> dict[str, tuple[str, str]]:
        """Header and meaning of every column: a parameter's from param_help
        (its name as the header), a metric's from legend."""
        return {**{k: (k, v) for k, v in self.param_help.items()}, **self.legend}

    def memory_problem(self, scheme: str, p: dict, max_memory: int | None = None,
                       share: int = 1) -> str | None:
        """None, or why one point would not fit the host memory it may use
        (max_memory bytes, else what the machine has over `share` workers)."""
        if self.footprint is None:
            return None
        what = ", ".join(f"{k}={v}" for k, v in p.items()) + f" ({scheme})"
        try:
            check(self.footprint(p), what, scheme=scheme, max_memory=max_memory, share=share)
        except OverBudget as e:
            return str(e)
        return None


def _num(x: float) -> str:
    return f"{x:,}" if float(x).is_integer() else f"{x:g}"


#: Pages a point may need in all: the model's default frames (64 GiB of 4 KiB
#: pages; ten million pages take about 2.7 GB of the model's own memory).
PAGE_BUDGET = 1 << 24


def within_budget(pages: float, what: str) -> str | None:
    """None, or why `pages` simulated pages are too many for one point."""
    if pages > PAGE_BUDGET:
        return (f"{what} needs {int(pages):,} pages, more than the {PAGE_BUDGET:,} "
                "frames a point may use")
    return None


def forked_footprint(pages: int, procs: int, cow: float) -> Footprint:
    """A parent with `pages` written pages and `procs` children alive at once,
    each writing its `cow` share (aim7's and contention's shape)."""
    mappings = pages * (1 + procs)
    return Footprint(pte_slots=mappings, mapped=mappings,
                     frames=int(pages * (1 + procs * cow)))


def era_of(p: dict) -> str:
    """The era a point runs in: "today" unless the run asked for another."""
    return str(p.get("era", "today"))
