# SPDX-License-Identifier: GPL-2.0-only
"""Named experiments that reproduce published claims (../shared/REFERENCES.md)."""

from __future__ import annotations

from .base import Claim, Experiment, Plot
from .runner import print_report, run_experiment, write_outputs


def experiments() -> dict[str, Experiment]:
    """Every experiment, by name."""
    from . import aim7, allocator, contention, hierarchy, kbuild, swapoff

    return {e.name: e for e in (aim7.EXPERIMENT, hierarchy.EXPERIMENT, kbuild.EXPERIMENT,
                                contention.EXPERIMENT, contention.RACE, contention.TRYLOCK,
                                allocator.EXPERIMENT, swapoff.EXPERIMENT)}


__all__ = [
    "Claim",
    "Experiment",
    "Plot",
    "experiments",
    "print_report",
    "run_experiment",
    "write_outputs",
]
