# SPDX-License-Identifier: GPL-2.0-only
"""The one table renderer every experiment uses, at any terminal width.

Headers are short; a legend below the table says what each one means and
in what unit. Each column has one number format, chosen from all its
values (integers with thousands separators, or every value with the same
decimals). A table wider than the console is split into several tables
that repeat the identifying columns (scheme and the parameters that vary),
so no cell is ever cut: scheme names and numbers are printed whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

#: Meanings of the columns every experiment has.
COMMON = {"scheme": ("scheme", "rmap scheme (rmaplab schemes)"),
          "wall_s": ("wall s", "host time to run the point, seconds")}


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its record key, its short header and what it means."""

    key: str
    header: str
    meaning: str


def number_format(values: Sequence[object]) -> Callable[[object], str]:
    """One format for every value of a column: integers (and floats that are
    all whole) with thousands separators; other floats with the decimals the
    smallest non-zero value needs for four significant digits (0 to 4), so
    (2N+1)/(N+1) at N=1,000 reads 1.999, not 2.00."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums or len(nums) != len([v for v in values if v is not None and v != ""]):
        return _text
    finite = [float(v) for v in nums if math.isfinite(v)]
    if all(float(v).is_integer() for v in finite):
        return lambda v: _num(v, 0)
    small = min((abs(v) for v in finite if v != 0), default=1.0)
    decimals = max(0, min(4, 3 - math.floor(math.log10(small))))
    return lambda v: _num(v, decimals)


def _num(v: object, decimals: int) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return _text(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:,.{decimals}f}"


def _text(v: object) -> str:
    return "" if v is None else str(v)


def columns_for(keys: Sequence[str], legend: Mapping[str, tuple[str, str]]) -> list[Column]:
    """Columns for keys, their headers and meanings from legend (or COMMON)."""
    out = []
    for k in keys:
        header, meaning = legend.get(k) or COMMON.get(k) or (k, "")
        out.append(Column(k, header, meaning))
    return out


def _width(col: Column, cells: list[str], numeric: bool) -> int:
    """A column's width: its widest cell; text wraps at spaces, so a text
    column asks for no more than 30 characters or its longest word."""
    if numeric:
        return max([len(col.header), *(len(c) for c in cells)])
    words = [len(w) for c in cells for w in c.split()]
    widest = max([len(c) for c in cells], default=0)
    return max([len(col.header), min(widest, max([30, *words]))])


def split(ids: list[int], rest: list[int], widths: list[int], avail: int) -> list[list[int]]:
    """Groups of columns (indices) that each fit avail characters beside the
    identifying columns ids: a rich table takes 3 per column and 1 more."""
    base = 1 + sum(widths[i] + 3 for i in ids)

    def pack(limit: int) -> list[list[int]]:
        groups: list[list[int]] = []
        cur: list[int] = []
        used = base
        for i in rest:
            if cur and used + widths[i] + 3 > limit:
                groups.append(cur)
                cur, used = [], base
            cur.append(i)
            used += widths[i] + 3
        if cur or not groups:
            groups.append(cur)
        return groups

    first = pack(avail)
    if len(first) == 1:
        return first
    # as many tables, of even widths: no last table of one column
    even = base + -(-sum(widths[i] + 3 for i in rest) // len(first))
    for limit in range(even, avail):
        groups = pack(limit)
        if len(groups) == len(first):
            return groups
    return first


def render(console: Console, title: str, records: Sequence[Mapping[str, object]],
           ids: Sequence[Column], metrics: Sequence[Column]) -> None:
    """Print records as one or more tables that fit console.width, then the
    legend. ids identify a row (repeated in every table), metrics are split
    between tables when they do not fit."""
    cols = [*ids, *metrics]
    formats = [number_format([r.get(c.key) for r in records]) for c in cols]
    cells = [[fmt(r.get(c.key)) for r in records] for c, fmt in zip(cols, formats)]
    numeric = [fmt is not _text for fmt in formats]
    widths = [_width(c, cs, n) for c, cs, n in zip(cols, cells, numeric)]
    id_idx = list(range(len(ids)))
    groups = split(id_idx, list(range(len(ids), len(cols))), widths, console.width)
    for n, group in enumerate(groups):
        part = f" ({n + 1} of {len(groups)})" if len(groups) > 1 else ""
        table = Table(title=title + part, title_justify="left")
        for i in id_idx + group:
            table.add_column(cols[i].header, justify="right" if numeric[i] else "left",
                             overflow="fold", no_wrap=False, min_width=widths[i])
        for row in range(len(records)):
            table.add_row(*[cells[i][row] for i in id_idx + group])
        console.print(table)
    legend = Table.grid(padding=(0, 2))
    legend.add_column(no_wrap=True)
    legend.add_column(overflow="fold")
    for c in cols:
        if c.meaning:
            legend.add_row(c.header, c.meaning)
    console.print(legend)
