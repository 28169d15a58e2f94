# SPDX-License-Identifier: GPL-2.0-only
"""Every scheme against every other on what users see (TRACE_FORMAT.md,
"What may differ between rmap schemes"): results and snapshots of random
traces are identical; only stats differ. The checker runs after every op.

The one documented exception (docs/divergences.md): anonmm copies a page
shared with another mm when mremap moves it or it comes back from swap at
another address. Its run is compared up to the first op at which the scheme
asked for such a copy; tests/test_anonmm.py pins what happens from there.
"""

from __future__ import annotations

import pytest

from rmaplab.gentrace import generate_trace
from rmaplab.replay import replay
from rmaplab.rmap import SCHEMES
from rmaplab.trace import parse_trace_lines

from scheme_util import replay_until_divergence


def same_prefix(scheme: str, base, results, snapshots) -> None:
    n = len(results)
    assert results == base.results[:n], f"{scheme} results differ from {SCHEMES[0]}"
    assert snapshots == base.snapshots[:len(snapshots)], f"{scheme} snapshots differ"


def every_scheme_agrees(ops, base, frames: int | None = None) -> None:
    """Every other scheme gives base's results and snapshots (anonmm up to its copy)."""
    for scheme in SCHEMES[1:]:
        results, snapshots = replay_until_divergence(ops, scheme, frames=frames)
        if scheme != "anonmm":
            assert len(results) == len(ops)
        same_prefix(scheme, base, results, snapshots)


@pytest.mark.parametrize("seed", range(1, 21))
def test_random_trace_same_under_every_scheme(seed: int) -> None:
    ops = parse_trace_lines(generate_trace(seed, 300, kernel_only=True, no_swap=True))
    every_scheme_agrees(ops, replay(ops, scheme=SCHEMES[0], check=True))


@pytest.mark.parametrize("seed", range(1, 11))
def test_random_trace_with_swap_same_under_every_scheme(seed: int) -> None:
    """Swap on (a small area, so that pageout runs out of slots too), swapoff,
    pageout and free among the ops: still nothing a user sees may differ."""
    ops = parse_trace_lines(generate_trace(seed, 300, kernel_only=True,
                                           swap_pages=32 if seed % 2 else 256))
    every_scheme_agrees(ops, replay(ops, scheme=SCHEMES[0], check=True))


@pytest.mark.parametrize("seed", range(1, 6))
def test_random_trace_oom_same_under_every_scheme(seed: int) -> None:
    """With few frames the OOM killer acts; its choices cannot depend on rmap."""
    ops = parse_trace_lines(generate_trace(seed, 300, kernel_only=True, no_swap=True))
    base = replay(ops, scheme=SCHEMES[0], check=True, frames=60)
    assert any("killed" in r for r in base.results), "the trace should trigger the OOM killer"
    every_scheme_agrees(ops, base, frames=60)
