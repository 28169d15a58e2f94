# SPDX-License-Identifier: GPL-2.0-only
"""The project stands on its own: every docs path a help text, a doc page
or a string in the code names exists, every link between the pages lands,
every anchor a claim cites is on the references page, and nothing points
outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rmaplab.cli import main
from rmaplab.experiments import experiments
from rmaplab.references import PAGE, SOURCES

ROOT = Path(__file__).resolve().parent.parent
DOCS_PATH = re.compile(r"docs/[\w/.-]+\.(?:md|png|svg)(?:#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
ANCHOR = re.compile(r'<a id="([\w-]+)"></a>')
#: What a user who cloned the repository cannot follow (regular expressions).
FORBIDDEN = (r"\.\./shared", r"shared/TRACE_FORMAT", r"TRACE_FORMAT\.md", r"(?i)\bseeds? 00\d",
             r"REFERENCES\.md")


def _help_texts() -> dict[str, str]:
    """`rmaplab --help` and every verb's (and sub-verb's) --help, by command line."""
    out: dict[str, str] = {}

    def visit(cmd: click.Command, path: list[str]) -> None:
        res = CliRunner().invoke(main, [*path, "--help"], prog_name="rmaplab")
        assert res.exit_code == 0, (path, res.output)
        out[" ".join(["rmaplab", *path])] = res.output
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                visit(sub, [*path, name])

    visit(main, [])
    return out


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
            *sorted((ROOT / "benchmarks").glob("*.md"))]


def _code_strings() -> dict[str, list[str]]:
    """Every string literal (docstrings included) of every module in rmaplab/."""
    out = {}
    for path in sorted((ROOT / "rmaplab").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out[str(path.relative_to(ROOT))] = [n.value for n in ast.walk(tree)
                                            if isinstance(n, ast.Constant)
                                            and isinstance(n.value, str)]
    return out


def _anchors() -> set[str]:
    return set(ANCHOR.findall((ROOT / PAGE).read_text(encoding="utf-8")))


def _check_target(target: str, where: str, base: Path = ROOT) -> str | None:
    """What is wrong with a path (and #anchor) named in `where`, or None."""
    path, _, anchor = target.partition("#")
    names = [path.replace("NAME", n) for n in experiments()] if "NAME" in path else [path]
    for name in names:
        file = (base / name).resolve()
        if not file.exists():
            return f"{where}: {target} does not exist"
        if (anchor and not anchor.isupper() and file == (ROOT / PAGE).resolve()
                and anchor not in _anchors()):  # KEY, REF: placeholders
            return f"{where}: {target}: no anchor {anchor!r} in {PAGE}"
    return None


def test_help_texts_name_only_docs_that_exist() -> None:
    helps = _help_texts()
    assert "rmaplab experiment" in helps and len(helps) > 5
    problems = [_check_target(t, cmd) for cmd, text in helps.items()
                for t in DOCS_PATH.findall(text)]
    assert not [p for p in problems if p], problems


def test_pages_name_only_docs_that_exist() -> None:
    problems = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        where = str(page.relative_to(ROOT))
        problems += [_check_target(t, where) for t in DOCS_PATH.findall(text)]
        for link in MD_LINK.findall(text):
            if re.match(r"[a-z]+:", link):  # https:, mailto:
                continue
            if link.startswith("#"):
                problems.append(None if page.resolve() != (ROOT / PAGE).resolve()
                                or link[1:] in _anchors() else f"{where}: {link}")
                continue
            problems.append(_check_target(link, where, base=page.parent))
    assert not [p for p in problems if p], [p for p in problems if p]


def test_code_names_only_docs_that_exist() -> None:
    problems = [_check_target(t, module) for module, strings in _code_strings().items()
                for s in strings for t in DOCS_PATH.findall(s)]
    assert not [p for p in problems if p], [p for p in problems if p]


def test_every_experiment_has_its_page_and_every_claim_its_anchor() -> None:
    anchors = _anchors()
    assert set(SOURCES) == anchors, "rmaplab/references.py and docs/references.md disagree"
    for exp in experiments().values():
        assert (ROOT / exp.doc).is_file(), (exp.name, exp.doc)
        assert (ROOT / "docs" / "experiments" / f"{exp.name}.md").is_file(), exp.name
        for claim in exp.claims:
            assert claim.ref in anchors, (exp.name, claim.ref)


def test_sweeps_page_lists_every_experiment() -> None:
    text = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `experiment` |"))
    for name in experiments():
        assert f"`{name}`" in row, name


def _user_files() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*"), *(ROOT / "rmaplab").rglob("*")]
    return sorted(f for f in files if f.is_file() and f.suffix in (".md", ".py", ".txt", ""))


@pytest.mark.parametrize("needle", FORBIDDEN)
def test_nothing_points_outside_the_repository(needle: str) -> None:
    hits = []
    for f in _user_files():
        rel = str(f.relative_to(ROOT))
        if "__pycache__" in rel:
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(needle, line):
                hits.append(f"{rel}:{n}: {line.strip()}")
    assert not hits, hits
