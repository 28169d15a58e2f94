# SPDX-License-Identifier: GPL-2.0-only
"""Every scheme against every other on what users see (TRACE_FORMAT.md,
"What may differ between rmap schemes"): results and snapshots of random
traces are identical; only stats differ. The checker runs after every op."""

from __future__ import annotations

import pytest

from rmaplab.gentrace import generate_trace
from rmaplab.replay import replay
from rmaplab.rmap import SCHEMES
from rmaplab.trace import parse_trace_lines


@pytest.mark.parametrize("seed", range(1, 21))
def test_random_trace_same_under_every_scheme(seed: int) -> None:
    ops = parse_trace_lines(generate_trace(seed, 300, kernel_only=True, no_swap=True))
    base = replay(ops, scheme=SCHEMES[0], check=True)
    for scheme in SCHEMES[1:]:
        out = replay(ops, scheme=scheme, check=True)
        assert out.results == base.results, f"{scheme} results differ from {SCHEMES[0]}"
        assert out.snapshots == base.snapshots, f"{scheme} snapshots differ"
        assert [s["label"] for s in out.stats] == [s["label"] for s in base.stats]


@pytest.mark.parametrize("seed", range(1, 6))
def test_random_trace_oom_same_under_every_scheme(seed: int) -> None:
    """With few frames the OOM killer acts; its choices cannot depend on rmap."""
    ops = parse_trace_lines(generate_trace(seed, 300, kernel_only=True, no_swap=True))
    base = replay(ops, scheme=SCHEMES[0], check=True, frames=60)
    assert any("killed" in r for r in base.results), "the trace should trigger the OOM killer"
    for scheme in SCHEMES[1:]:
        out = replay(ops, scheme=scheme, check=True, frames=60)
        assert out.results == base.results
        assert out.snapshots == base.snapshots
