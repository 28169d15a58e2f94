# SPDX-License-Identifier: GPL-2.0-only
"""The experiment runner as a notebook user calls it: Python values, a
result that is a list of records, pandas, and Jupyter's reprs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from rmaplab.experiments import ExperimentResult, experiments, run_experiment
from rmaplab.experiments.runner import parse_params
from rmaplab.references import SOURCES, cite
from rmaplab.replay import replay
from rmaplab.trace import load_trace

TRACES = Path(__file__).resolve().parent / "traces"

SMALL = {"procs": [4, 16], "pages": 32, "cow": 1.0}


def test_run_experiment_takes_a_name_and_python_values() -> None:
    res = run_experiment("aim7", schemes=["modern", "anon_vma"], params=SMALL, progress=False)
    assert isinstance(res, ExperimentResult) and isinstance(res, list)
    assert res.experiment is experiments()["aim7"]
    assert [(r["scheme"], r["procs"], r["pages"]) for r in res] == [
        ("modern", 4, 32), ("modern", 16, 32), ("anon_vma", 4, 32), ("anon_vma", 16, 32)]
    # the single family lists every VMA of the family; modern (2N+1)/(N+1)
    by = {(r["scheme"], r["procs"]): r for r in res}
    assert by["anon_vma", 16]["listed_avg"] > 8 > by["modern", 16]["listed_avg"]


def test_python_values_and_cli_strings_give_the_same_grid() -> None:
    exp = experiments()["aim7"]
    from_py = parse_params(exp, {"procs": (10, 100), "pages": 1000, "cow": 1})
    from_cli = parse_params(exp, ["procs=10,100", "pages=1000", "cow=1"])
    assert from_py == from_cli == {"procs": [10, 100], "pages": [1000], "cow": [1.0]}
    assert isinstance(from_py["cow"][0], float)
    assert parse_params(exp, {"procs": range(1, 3)})["procs"] == [1, 2]


@pytest.mark.parametrize(("params", "message"), [
    ({"proc": [10]}, "'proc': aim7 has parameters procs, pages, cow"),
    ({"procs": ["10"]}, "'procs': '10' is not an integer"),
    ({"procs": [True]}, "'procs': True is a boolean"),
    ({"procs": 2.5}, "'procs': 2.5 is not an integer"),
    ({"cow": float("nan")}, "'cow': nan is not a finite number"),
    ({"procs": []}, "'procs': no value given"),
    ({"procs": [0]}, "parameter procs=0 is out of range"),
    ("procs=10", "give a mapping or a list of NAME=VALUE strings"),
])
def test_bad_python_values_name_the_parameter(params: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        run_experiment("aim7", params=params, progress=False)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_unknown_experiment_and_scheme_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown experiment 'aim8'; choose from aim7"):
        run_experiment("aim8")
    with pytest.raises(ValueError, match="unknown scheme 'morden'"):
        run_experiment("aim7", schemes=["morden"], params=SMALL, progress=False)
    res = run_experiment("aim7", schemes="all", params={"procs": 2, "pages": 4, "cow": 1},
                         progress=False)
    assert len(res) == 5


def test_to_pandas() -> None:
    pd = pytest.importorskip("pandas")
    res = run_experiment("aim7", schemes="modern", params=SMALL, progress=False)
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 2 and list(df["procs"]) == [4, 16]
    assert {"scheme", "listed_avg", "wall_s"} <= set(df.columns)


def test_to_pandas_without_pandas_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_experiment("aim7", schemes="modern", params=SMALL, progress=False)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'rmaplab\[pandas\]'"):
        res.to_pandas()


def test_replay_output_to_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    ops = load_trace(str(TRACES / "fork_cow.jsonl"))
    out = replay(ops, scheme="anon_vma_chain")
    results = out.to_pandas()
    assert len(results) == len(out.results) and list(results["line"]) == [
        r["line"] for r in out.results]
    stats = out.to_pandas("stats")
    assert list(stats["label"])[-1] == "end"
    assert stats["objects.anon_vma_chain"].iloc[-1] == out.stats[-1]["objects"]["anon_vma_chain"]
    with pytest.raises(ValueError, match="choose 'results' or 'stats'"):
        out.to_pandas("snapshots")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"ReplayOutput.to_pandas\(\) needs pandas: pip install"):
        out.to_pandas()


def test_repr_html_is_the_table_and_the_claim_with_its_source() -> None:
    res = run_experiment("aim7", schemes=["modern", "anon_vma_chain"], params=SMALL,
                         progress=False)
    page = res._repr_html_()
    assert page.startswith("<pre") and page.count("<svg") == len(res.experiment.plots) == 3
    assert "<?xml" not in page and page.endswith("</svg>\n</div>")
    assert "anon_vma_chain" in page and "modern" in page
    assert "docs/references.md#aim7-anon-vma-chain" in page
    assert "&lt;20100128002000.2bf5e365@annuminas.surriel.com" in page  # escaped
    text = res.report_text(width=300)
    assert "  source:    " + cite("aim7-anon-vma-chain") + "\n" in text


def test_repr_svg_draws_the_plots() -> None:
    res = run_experiment("aim7", schemes=["modern", "anon_vma"], params=SMALL, progress=False)
    svgs = res.plot_svgs()
    assert len(svgs) == len(res.experiment.plots) == 3
    root = ET.fromstring(res._repr_svg_() or "")
    assert root.tag.endswith("svg")
    assert ExperimentResult(res.experiment)._repr_svg_() is None  # nothing to draw


def test_every_claim_cites_a_known_source() -> None:
    for exp in experiments().values():
        for claim in exp.claims:
            assert claim.ref in SOURCES, (exp.name, claim.ref)


def test_python_dash_m_rmaplab() -> None:
    out = subprocess.run([sys.executable, "-m", "rmaplab", "--help"], capture_output=True,
                         text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: rmaplab ")


def test_the_package_says_it_is_typed() -> None:
    assert resources.files("rmaplab").joinpath("py.typed").is_file()


def test_kbuild_singleton_claim_names_each_job_count_once() -> None:
    res = run_experiment("kbuild", schemes=["modern", "pte_chain"],
                         params={"jobs": [1, 4], "units": 8, "libs": 2, "heap_pages": 32},
                         progress=False)
    claim = next(c for c in res.experiment.claims if c.ref == "pte-chain-singletons")
    text = claim.ours(res)
    assert text.count("j1:") == 1 and text.count("j4:") == 1, text
    assert text.count("pte_chain objects at peak") == 2, text


def test_results_pickle_and_serialise() -> None:
    res = run_experiment("aim7", schemes="modern", params={"procs": 2, "pages": 4},
                         progress=False)
    back = pickle.loads(pickle.dumps(res))
    assert isinstance(back, ExperimentResult) and back == res
    assert back.experiment is res.experiment
    assert json.loads(json.dumps(res)) == list(res)
    own = ExperimentResult(replace(res.experiment, name="mine"), res)
    assert pickle.loads(pickle.dumps(own)) == list(res)  # its records, as a list
