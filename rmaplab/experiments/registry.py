# SPDX-License-Identifier: GPL-2.0-only
"""The registered experiments, by name (``rmaplab experiment NAME``)."""

from __future__ import annotations

from . import aim7, allocator, contention, hierarchy, kbuild, swapoff
from .base import Experiment


def experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name, in the order the docs list them."""
    return {e.name: e for e in (aim7.EXPERIMENT, hierarchy.EXPERIMENT, kbuild.EXPERIMENT,
                                contention.EXPERIMENT, contention.RACE, contention.TRYLOCK,
                                allocator.EXPERIMENT, swapoff.EXPERIMENT)}
