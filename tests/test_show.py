# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab show``: a picture of the rmap structures on a fork scenario for
every scheme (dot always; svg and png where Graphviz is installed), the
.dot file and the install hint where it is not, and bad input named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.rmap import SCHEMES
from rmaplab.show import show

TRACE = Path(__file__).parent / "traces" / "fork_cow.jsonl"
AT = 14  # after `fork c g`: p, c and g alive, pages shared and COWed
HAS_DOT = shutil.which("dot") is not None
# What each scheme's drawing must show, for the schemes known here.
MUST = {"modern": ("anon_vma #", "avc 1", "parent"), "anon_vma_chain": ("anon_vma #", "avc 2"),
        "anon_vma": ("(2004)", "list 3"), "anonmm": ("anonmm #", "(head)"),
        "pte_chain": ("pte_chain", "pte.direct")}


def _show(*args: str) -> object:
    return CliRunner().invoke(main, ["show", str(TRACE), *args])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_show_draws_every_scheme(scheme: str, tmp_path: Path) -> None:
    out = tmp_path / f"{scheme}.dot"
    r = _show("--at", str(AT), "--scheme", scheme, "--format", "dot", "-o", str(out))
    assert r.exit_code == 0, r.output
    dot = out.read_text()
    assert dot.startswith("digraph rmap {") and dot.rstrip().endswith("}")
    for task in ("task p", "task c", "task g"):
        assert task in dot
    assert "page (frame" in dot and "walk visits" in dot and "mapcount 3" in dot
    for needle in MUST.get(scheme, ()):
        assert needle in dot, needle
    if not HAS_DOT:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    for fmt, magic in (("svg", b"<svg"), ("png", b"\x89PNG")):
        path = tmp_path / f"{scheme}.{fmt}"
        r = _show("--at", str(AT), "--scheme", scheme, "--format", fmt, "-o", str(path))
        assert r.exit_code == 0, r.output
        assert magic in path.read_bytes()[:400]


def test_show_walk_visits_vmas_that_do_not_map_the_page() -> None:
    """anon_vma_chain: the parent's page that it wrote in place after the
    child's COW is still walked through every VMA on its anon_vma's list."""
    dot = show(TRACE, at=AT, scheme="anon_vma_chain", fmt="dot").decode()
    assert "walk visits 3, 1 map it" in dot and "no pte" in dot
    dot = show(TRACE, at=AT, scheme="pte_chain", fmt="dot").decode()
    assert "no pte" not in dot  # the chain holds exactly the mapping PTEs


def test_show_without_dot_writes_dot_and_says_how_to_install(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    r = _show("--at", str(AT), "--format", "png", "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 3
    assert "apt-get install graphviz" in r.output and "Traceback" not in r.output
    assert (tmp_path / "x.dot").read_text().startswith("digraph")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, named", [
    (["--at", "0"], "--at 0"),
    (["--at", "999"], "--at 999"),
    (["--at", "3", "--scheme", "nope"], "'nope' is not one of"),
])
def test_show_bad_input_exits_2(args: list[str], named: str, tmp_path: Path) -> None:
    r = _show(*args, "--format", "dot", "-o", str(tmp_path / "x.dot"))
    assert r.exit_code == 2 and named in r.output and "Traceback" not in r.output


def test_show_bad_trace_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op": "spawn", "task": "p"}\n{"op": "fork", "task": "q", "child": "c"}\n')
    r = CliRunner().invoke(main, ["show", str(bad), "--at", "2", "--format", "dot"])
    assert r.exit_code == 2 and "line 2" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["show", str(tmp_path / "none.jsonl"), "--at", "1"])
    assert r.exit_code == 2 and "cannot read" in r.output


def test_show_draws_an_unknown_scheme_from_its_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no drawer for its shape, a scheme's objects are drawn from their
    fields (the fallback a new scheme gets), and its own hook wins over all."""
    import rmaplab.show as sh

    monkeypatch.setattr(sh, "DRAWERS", [])
    dot = show(TRACE, at=AT, scheme="anon_vma_chain", fmt="dot").decode()
    assert "AnonVma" in dot and "Avc" in dot and "vma->avcs[0]" in dot
    from rmaplab.rmap.anon_vma_chain import AnonVmaChainScheme

    def rmap_graph(self, g, frames):  # a scheme's own drawing
        g.edge(g.page(frames[0]), g.node("mine", "drawn by the scheme"))

    monkeypatch.setattr(AnonVmaChainScheme, "rmap_graph", rmap_graph, raising=False)
    dot = show(TRACE, at=AT, scheme="anon_vma_chain", fmt="dot").decode()
    assert "drawn by the scheme" in dot and "AnonVma" not in dot
