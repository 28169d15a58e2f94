# SPDX-License-Identifier: GPL-2.0-only
"""Every claim prints a one-word verdict (reproduced / differs, with the page
that explains a difference), decided from the records, never hard-coded."""

from __future__ import annotations

import pytest
from small_grids import SMALL

from rmaplab.experiments import experiments, run_experiment
from rmaplab.experiments.base import Claim

VERDICTS = ("reproduced", "differs (see docs/", "undecided (")


def test_every_claim_has_a_judge() -> None:
    for exp in experiments().values():
        for claim in exp.claims:
            assert callable(claim.judge), (exp.name, claim.ref)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_verdicts_come_from_the_records(name: str) -> None:
    exp = experiments()[name]
    records = run_experiment(exp, schemes="all", params=SMALL[name], progress=False)
    for claim in exp.claims:
        v = claim.verdict(list(records), exp.doc)
        assert v.startswith(VERDICTS), (name, claim.ref, v)
        if v.startswith("differs"):
            assert (claim.explains or exp.doc) in v


def test_a_verdict_follows_its_records() -> None:
    exp = experiments()["aim7"]
    claim = exp.claims[0]
    good = [{"scheme": "anon_vma_chain", "procs": 100, "cow": 1.0, "listed_avg": 1.99},
            {"scheme": "anon_vma", "procs": 100, "cow": 1.0, "listed_avg": 101.0}]
    bad = [{"scheme": "anon_vma_chain", "procs": 100, "cow": 1.0, "listed_avg": 7.0},
           {"scheme": "anon_vma", "procs": 100, "cow": 1.0, "listed_avg": 101.0}]
    assert claim.verdict(good, exp.doc) == "reproduced"
    assert claim.verdict(bad, exp.doc) == f"differs (see {exp.doc})"
    assert claim.verdict([{"scheme": "pte_chain", "procs": 100, "cow": 1.0, "listed_avg": 1.0}],
                         exp.doc).startswith("undecided")


def test_a_judge_that_cannot_read_the_records_is_undecided() -> None:
    c = Claim(ref="x", text="t", published="p", ours=lambda rs: "", judge=lambda rs: rs[0]["no"])
    assert c.verdict([{}], "docs/x.md").startswith("undecided")
