# SPDX-License-Identifier: GPL-2.0-only
"""The invariant checker catches what it claims to (a checker that never
fails proves nothing): each test breaks one invariant by hand."""

from __future__ import annotations

import pytest

from rmaplab.consts import WINDOW_START
from rmaplab.errors import ModelBug
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES

A = WINDOW_START


def forked(scheme: str) -> Machine:
    m = Machine(Config(scheme=scheme, frames=1000))
    m.spawn("p")
    m.mmap("p", A, 8, "rw")
    m.write("p", A, 8, 1)
    m.fork("p", "c")
    m.write("c", A, 2, 2)
    m.check()
    return m


@pytest.mark.parametrize("scheme", SCHEMES)
def test_catches_wrong_mapcount(scheme: str) -> None:
    m = forked(scheme)
    f = int(m.tasks["p"].mm.vmas[0].pt[5]) >> 8
    m.frames.mapcount[f] += 1
    with pytest.raises(ModelBug, match="mapcount"):
        m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_catches_pte_the_rmap_walk_misses(scheme: str) -> None:
    m = forked(scheme)
    if not hasattr(m.rmap, "nr_avc"):
        pytest.skip(f"{scheme} has no anon_vma_chain to unlink (tests/test_{scheme}.py "
                    "breaks its own structures the same way)")
    vma = m.tasks["c"].mm.vmas[0]
    # unlink the child's VMA from its parent's anon_vma: shared pages get lost
    for avc in list(vma.avcs):
        if avc.anon_vma is not vma.anon_vma:
            del avc.anon_vma.head[avc]
            vma.avcs.remove(avc)
            m.rmap.nr_avc -= 1
            m.slab.live["anon_vma_chain"] -= 1
    with pytest.raises(ModelBug, match="misses"):
        m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_catches_leaked_frame(scheme: str) -> None:
    m = forked(scheme)
    m.frames.alloc(1)
    with pytest.raises(ModelBug):
        m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_catches_wrong_rss(scheme: str) -> None:
    m = forked(scheme)
    m.tasks["c"].mm.rss += 1
    with pytest.raises(ModelBug, match="rss"):
        m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_catches_leaked_vma(scheme: str) -> None:
    m = forked(scheme)
    m.slab.alloc("vma")
    with pytest.raises(ModelBug, match="VMAs"):
        m.check()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_clean_after_everything_exits(scheme: str) -> None:
    m = forked(scheme)
    m.exit("p")
    m.check()  # the child's pages keep the parent's anon_vma alive
    m.exit("c")
    m.check()
    assert not any(m.objects().values())
