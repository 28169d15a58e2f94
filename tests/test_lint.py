# SPDX-License-Identifier: GPL-2.0-only
"""The tree is clean under the project's ruff rules and mypy (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' installs it)")
    return path


def test_ruff_check_is_clean() -> None:
    out = subprocess.run([tool("ruff"), "check", "--no-cache", "rmaplab", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_is_clean() -> None:
    out = subprocess.run([tool("mypy")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


#: The public API modules held to ``mypy --strict`` (imports followed
#: silently: their own annotations are checked, not their dependencies').
STRICT = ["rmaplab/machine.py", "rmaplab/mm_state.py", "rmaplab/uapi.py", "rmaplab/replay.py",
          "rmaplab/sweep.py", "rmaplab/store.py", "rmaplab/budget.py",
          "rmaplab/experiments/runner.py", "rmaplab/experiments/registry.py",
          "rmaplab/references.py", "rmaplab/optional.py"]


def test_public_api_is_mypy_strict_clean() -> None:
    out = subprocess.run([tool("mypy"), "--strict", "--follow-imports=silent", *STRICT],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
