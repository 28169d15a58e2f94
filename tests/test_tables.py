# SPDX-License-Identifier: GPL-2.0-only
"""Every experiment's table at 80 and 200 columns: nothing cut, every
scheme name and every number whole, one number format per column, a
legend for the short headers; and once in a real 80-column tmux pane."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from small_grids import SMALL

from rmaplab.experiments import experiments, print_report, run_experiment
from rmaplab.experiments.table import columns_for, number_format
from rmaplab.rmap import SCHEMES


@pytest.fixture(scope="module")
def runs() -> dict[str, list[dict]]:
    out = {}
    for name, exp in experiments().items():
        assert name in SMALL, f"add a small grid for {name} to SMALL"
        schemes = None if exp.schemes else list(SCHEMES)
        out[name] = run_experiment(exp, schemes=schemes, params=SMALL[name], progress=False)
    return out


def _render(name: str, records: list[dict], width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    print_report(experiments()[name], records, console)
    return console.export_text()


def _whole(token: str, text: str) -> bool:
    """token appears in text not as a part of a longer word or number."""
    return re.search(r"(?<![\w.,])" + re.escape(token) + r"(?![\w.,])", text) is not None


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_table_is_whole_at_width(runs: dict[str, list[dict]], name: str, width: int) -> None:
    exp = experiments()[name]
    records = runs[name]
    text = _render(name, records, width)
    assert "…" not in text and "..." not in text
    assert max(len(line) for line in text.splitlines()) <= width
    # the table part: up to the claims
    tables = text.split(exp.claims[0].text[:20])[0] if exp.claims else text
    varying = [k for k in exp.params if len({r[k] for r in records}) > 1]
    cols = ["scheme", *varying, *exp.columns]
    for r in records:
        assert _whole(r["scheme"], tables), r["scheme"]
    for key in cols:
        fmt = number_format([r.get(key) for r in records])
        cells = [fmt(r.get(key)) for r in records]
        decimals = {len(c.split(".")[1]) if "." in c else 0 for c in cells
                    if re.fullmatch(r"-?[\d,]+(\.\d+)?", c)}
        assert len(decimals) <= 1, f"{key}: mixed formats {cells}"
        step = 10.0 ** -max(decimals, default=0)
        for r, cell in zip(records, cells):
            v = r.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):  # rounded, not cut
                assert abs(float(cell.replace(",", "")) - v) <= step / 2 + 1e-9, (key, cell, v)
            for word in cell.split():
                assert _whole(word, tables), f"{name} at {width}: {key} cell {word!r} not whole"
    # every short header is explained below the table
    legend = text.split("┘")[-1]
    for c in columns_for(cols, exp.column_legend()):
        assert c.meaning, f"{name}: no legend for {c.key}"
        assert re.search(r"^" + re.escape(c.header) + r"\s{2,}\S", legend, re.M), c.header


def test_one_format_per_column() -> None:
    fmt = number_format([1.909, 1001.0, 2.0])
    assert [fmt(v) for v in (1.909, 1001.0, 2.0)] == ["1.909", "1,001.000", "2.000"]
    assert number_format([2001 / 1001, 0.5])(2001 / 1001) == "1.9990"
    fmt = number_format([1001, 3])
    assert fmt(1001) == "1,001" and fmt(3) == "3"
    fmt = number_format([256192.0, 2.0])
    assert fmt(256192.0) == "256,192"
    assert number_format(["2004", "2019"])("2004") == "2004"


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_table_in_a_real_tmux_pane(tmp_path: Path, name: str, width: int) -> None:
    """Every experiment's table as a terminal of that width shows it: no cut
    cell, no line past the width, every scheme's name whole."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    rmaplab = Path(sys.executable).with_name("rmaplab")
    if not rmaplab.exists():
        pytest.skip(f"no rmaplab script beside {sys.executable} (pip install -e .)")
    sock = f"rmaplab-test-{os.getpid()}-{tmp_path.name}"
    params = " ".join(f"--param {p}" for p in SMALL[name])
    cmd = (f"{rmaplab} experiment {name} --schemes all {params} "
           f"--out {tmp_path / 'out'} --no-progress; tmux -L {sock} wait-for -S done")
    base = [tmux, "-L", sock, "-f", "/dev/null"]
    subprocess.run([*base, "new-session", "-d", "-x", str(width), "-y", "50", "-s", "t",
                    "bash", "--norc", "-c", cmd + "; sleep 60"], check=True)
    try:
        subprocess.run([*base, "wait-for", "done"], check=True, timeout=120)
        text = subprocess.run([*base, "capture-pane", "-p", "-J", "-S", "-", "-t", "t"],
                              check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run([*base, "kill-server"], check=False)
    assert "┃ scheme" in text, text
    assert "…" not in text
    # the list of files written is one line on stderr, wrapped by the terminal
    lines = [line for line in text.splitlines() if not line.startswith("rmaplab experiment: wrote")]
    assert max(len(line) for line in lines) <= width
    exp = experiments()[name]
    for s in (exp.schemes or SCHEMES):
        assert _whole(s, text.split("  source:")[0]), s
    assert "wrote " in text
