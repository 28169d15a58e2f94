# SPDX-License-Identifier: GPL-2.0-only
"""Named experiments that reproduce published claims (docs/references.md)."""

from __future__ import annotations

from .base import Claim, Experiment, Plot
from .registry import experiments
from .runner import ExperimentResult, print_report, run_experiment, write_outputs

__all__ = [
    "Claim",
    "Experiment",
    "ExperimentResult",
    "Plot",
    "experiments",
    "print_report",
    "run_experiment",
    "write_outputs",
]
