# SPDX-License-Identifier: GPL-2.0-only
"""The HTML report: self-contained, with a table and the plots per
experiment; CSV and Parquet exports; and, where Chromium is installed, a
headless screenshot whose plot area is not blank."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.store import Store
from rmaplab.sweep import run_sweep
from rmaplab.sweep_spec import parse_spec


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("report") / "r.sqlite"
    run_sweep({"experiment": "aim7", "schemes": ["modern", "anon_vma_chain"], "repeats": 2,
               "params": {"procs": [2, 4, 8], "pages": 16, "cow": 1.0}}, db, scheduler="inline",
              progress=False)
    run_sweep({"experiment": "hierarchy", "params": {"generations": [2, 4, 8], "vmas": 2}}, db,
              scheduler="inline", progress=False)
    spec = parse_spec({"experiment": "aim7", "schemes": ["modern"],
                       "params": {"procs": [3], "pages": 16, "cow": 1.0}})
    with Store(db) as s:  # a failed point, as a sweep records one
        s.record(spec.points()[0], ok=False, metrics=None, error="RuntimeError: boom <&>",
                 wall_s=0.1, version="0.1.0", spec_hash=spec.hash)
    return db


def test_report_html_csv_parquet(results: Path, tmp_path: Path) -> None:
    html, csv_path, pq_path = tmp_path / "r.html", tmp_path / "r.csv", tmp_path / "r.parquet"
    r = CliRunner().invoke(main, ["report", str(results), "--html", str(html), "--csv",
                                  str(csv_path), "--parquet", str(pq_path)])
    assert r.exit_code == 0, r.output
    text = html.read_text()
    # self-contained: nothing to fetch, no script
    assert not re.search(r"<script|<link|<img[^>]+src=\"http|url\((?!#)|@import", text)
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert text.count("<svg") == 4  # aim7's three plots, hierarchy's one
    for needle in ("aim7", "hierarchy", "docs/references.md#aim7-anon-vma-chain", "listed_avg",
                   "boom &lt;&amp;&gt;",
                   "Runs and versions", "Python 3.", "procs = [2, 4, 8]"):
        assert needle in text, needle
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 + 6 + 1 and {r["status"] for r in rows} == {"ok", "failed"}
    import pyarrow.parquet as pq

    t = pq.read_table(pq_path)
    assert t.num_rows == 19 and "listed_avg" in t.column_names


def test_report_needs_an_output(results: Path) -> None:
    r = CliRunner().invoke(main, ["report", str(results)])
    assert r.exit_code == 2 and "--html" in r.output


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed "
                    "(apt-get install chromium); .ci/run installs it where it can")
def test_report_renders_plots_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    import matplotlib.image

    html, png = tmp_path / "r.html", tmp_path / "shot.png"
    r = CliRunner().invoke(main, ["report", str(results), "--html", str(html)])
    assert r.exit_code == 0, r.output
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
           "--window-size=1200,1600", html.resolve().as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert png.exists(), out.stderr[-2000:]
    img = matplotlib.image.imread(str(png))[..., :3]
    assert img.shape[:2] == (1600, 1200)
    # the plot area (the first experiment's two plots sit under the heading)
    area = img[150:700, :]
    nonwhite = (area < 0.95).any(axis=-1).mean()
    assert nonwhite > 0.03, f"plot area is blank ({nonwhite:.3%} non-white)"

    def near(rgb: tuple[int, int, int]) -> int:
        return int((abs(area - [c / 255 for c in rgb]).max(axis=-1) < 0.12).sum())

    # the two series' colours (matplotlib's C0 blue, C1 orange): lines and markers drawn
    assert near((31, 119, 180)) > 150 and near((255, 127, 14)) > 150
