# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab show``: a picture of the rmap structures on a fork scenario for
every scheme (dot always; svg and png where Graphviz is installed), the
.dot file and the install hint where it is not, and bad input named."""

from __future__ import annotations

import math
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


# -- the layout, from Graphviz's own coordinates (dot -Tjson, points) -------------------
def _layout(scheme: str) -> tuple[str, dict]:
    import json
    import subprocess

    dot = show(TRACE, at=AT, scheme=scheme, fmt="dot").decode()
    out = subprocess.run(["dot", "-Tjson"], input=dot.encode(), capture_output=True, check=True,
                         timeout=60)
    return dot, json.loads(out.stdout)


def _spline(pos: str) -> list[tuple[float, float]]:
    """Points along an edge: its Bezier curves sampled, arrow tips included."""
    pts: list[tuple[float, float]] = []
    tips: list[tuple[float, float]] = []
    for tok in pos.split():
        arrow = tok.startswith(("s,", "e,"))
        x, y = tok[2:].split(",") if arrow else tok.split(",")
        (tips if arrow else pts).append((float(x), float(y)))
    out = list(tips)
    for i in range(0, len(pts) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts[i:i + 4]
        for k in range(11):
            t = k / 10
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
            out.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3))
    return out


def _box(node: dict) -> tuple[float, float, float, float]:
    x, y = map(float, node["pos"].split(","))
    w, h = float(node["width"]) * 72 / 2, float(node["height"]) * 72 / 2
    return x - w, y - h, x + w, y + h


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_show_layout_puts_edges_and_labels_next_to_what_they_describe(scheme: str) -> None:
    from rmaplab.show import COLORS

    dot, g = _layout(scheme)
    nodes = {o["_gvid"]: o for o in g["objects"] if "pos" in o}
    pages = {i for i, n in nodes.items() if str(n.get("label", "")).startswith("page (frame")}
    assert len(pages) == 4
    left = max(_box(nodes[i])[2] for i in pages)  # the pages' column, leftmost of the picture
    assert all(_box(n)[0] >= left - 1 for i, n in nodes.items()
               if i not in pages and n["name"] != "legend")
    # the legend is a small table node, clear of everything else
    legend = next(n for n in nodes.values() if n["name"] == "legend")
    assert "legend [shape=plaintext, margin=0, label=<<TABLE" in dot
    lx0, ly0, lx1, ly1 = _box(legend)
    for o in g["objects"]:  # clusters (bb) and nodes (pos)
        if "bb" in o:
            x0, y0, x1, y1 = map(float, o["bb"].split(","))
        elif "pos" in o and o is not legend:
            x0, y0, x1, y1 = _box(o)
        else:
            continue
        assert x1 <= lx0 or x0 >= lx1 or y1 <= ly0 or y0 >= ly1, o["name"]
    width = float(g["bb"].split(",")[2])
    first_hop = 0
    labels: list[tuple[float, float, float, str]] = []
    for e in g["edges"]:
        tail, head = nodes[e["tail"]], nodes[e["head"]]
        pts = _spline(e["pos"])
        tx0, ty0, tx1, ty1 = _box(tail)
        hx0, hy0, hx1, hy1 = _box(head)
        if e["tail"] in pages and e.get("style") != "dashed" and e["color"] != COLORS["pte"]:
            # page->mapping (pte.chain, pte.direct): straight on to the right, no loop round
            first_hop += 1
            assert hx0 > tx1, (scheme, head["name"])
            assert all(tx0 - 5 <= x <= hx1 + 5 for x, _ in pts), (scheme, "loops back")
            assert all(min(ty0, hy0) - 72 <= y <= max(ty1, hy1) + 72 for _, y in pts)
            if scheme != "pte_chain":  # to the next column: nothing between them
                assert head["label"].startswith(("anon_vma", "anonmm"))
                assert hx0 - tx1 < width / 3
        if str(e.get("headport", "")).startswith("p"):
            # a PTE: the edge ends at the VMA's row that names it, on the VMA's left side
            assert abs(max(x for x, _ in pts) - hx0) < 12 and hy0 <= pts[-1][1] <= hy1
            assert f'PORT="{e["headport"].split(":")[0]}"' in dot
        if e.get("label"):
            # a label sits by its own edge: its box (9-point text) within 0.4 inch of
            # it, and on no other label
            lx, ly = map(float, e["lp"].split(","))
            hw, hh = 2.2 * len(e["label"]), 5.0
            near = min(math.hypot(max(abs(lx - x) - hw, 0), max(abs(ly - y) - hh, 0))
                       for x, y in pts)
            assert near < 30, (scheme, e["label"], near)
            for ox, oy, ohw, text in labels:
                assert abs(ox - lx) >= ohw + hw or abs(oy - ly) >= 2 * hh, (e["label"], text)
            labels.append((lx, ly, hw, e["label"]))
    assert first_hop >= 4  # every drawn page has its mapping (or chain) edge
    # the rows of a VMA's PTEs, one per page drawn, in address order down the node
    by_vma: dict[int, list[tuple[float, str]]] = {}
    for e in g["edges"]:
        if str(e.get("headport", "")).startswith("p"):
            end = max(_spline(e["pos"]), key=lambda p: p[0])
            by_vma.setdefault(e["head"], []).append((end[1], e["headport"]))
    assert by_vma
    for ends in by_vma.values():
        order = [port for _, port in sorted(ends, reverse=True)]  # y grows upward
        assert order == sorted(order, key=lambda p: int(p.split(":")[0][1:], 16))


def test_picture_has_an_svg_repr_for_jupyter() -> None:
    from rmaplab.show import picture

    pic = picture(TRACE, at=AT, scheme="modern")
    assert "digraph rmap" in pic.to_dot()
    if HAS_DOT:
        assert pic._repr_svg_().lstrip().startswith(("<svg", "<?xml"))
