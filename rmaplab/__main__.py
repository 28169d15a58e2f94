# SPDX-License-Identifier: GPL-2.0-only
"""``python -m rmaplab``: the same command line as ``rmaplab``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main(prog_name="rmaplab")
