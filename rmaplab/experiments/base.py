# SPDX-License-Identifier: GPL-2.0-only
"""What an experiment is: a named scenario, a parameter grid, and a claim.

An Experiment runs one point (a scheme and one value of each parameter) on
a fresh Machine and returns flat metrics. The runner (runner.py) sweeps the
grid, writes the records (CSV, Parquet), the table and the plots; the
claim says which published figure (../shared/REFERENCES.md) the numbers
reproduce, and how to read ours next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class Claim:
    """A published figure and the metric of ours that answers it."""

    row: str  # REFERENCES.md row
    text: str  # the claim, quoted or summarised
    published: str  # the published number, as published
    ours: Callable[[list[dict]], str]  # our number, from the records


@dataclass(slots=True, kw_only=True)
class Plot:
    x: str  # a parameter
    y: str  # a metric
    xlabel: str
    ylabel: str
    logx: bool = False
    logy: bool = False
    series: str = "scheme"


@dataclass(slots=True, kw_only=True)
class Experiment:
    name: str
    title: str
    params: dict[str, list]  # defaults; --param k=v1,v2 overrides
    run: Callable[[str, dict], dict]  # (scheme, params) -> metrics
    columns: Sequence[str]  # metrics shown in the table
    claims: list[Claim] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    schemes: Sequence[str] | None = None  # default schemes (None: all)
    doc: str = ""  # docs/experiments/<name>.md
