# SPDX-License-Identifier: GPL-2.0-only
"""Replaying a trace under a scheme up to its documented divergence.

The one documented difference between schemes (docs/divergences.md 7):
anonmm copies a page shared with another mm when mremap moves it or it
comes back from swap at another address. Its run is compared up to the
first op at which the scheme asked for such a copy; tests/test_anonmm.py
pins what happens from there.
"""

from __future__ import annotations

from rmaplab.machine import Config, Machine
from rmaplab.replay import run_op


def replay_until_divergence(ops, scheme: str, frames: int | None = None):
    """Results and snapshots up to the first op that made the scheme ask for
    a private copy (anonmm's early COW); all of them for the other schemes.
    The invariant checker runs after every op."""
    cfg = Config(scheme=scheme, check=True)
    if frames is not None:
        cfg.frames = frames
    m = Machine(cfg)
    results, snapshots = [], []
    for op in ops:
        asked = getattr(m.rmap, "copies_asked", 0)
        res, snap = run_op(m, op)
        if getattr(m.rmap, "copies_asked", 0) != asked:
            break
        results.append(res)
        if snap is not None:
            snapshots.append(snap)
    return results, snapshots
