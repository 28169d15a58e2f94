# SPDX-License-Identifier: GPL-2.0-only
"""Tests of the random trace generator (rmaplab.gentrace)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from rmaplab.consts import ADVICES, PAGE_SIZE, WINDOW_START
from rmaplab.gentrace import REGION_PAGES, generate_trace
from rmaplab.gentrace_cli import gen_trace_cmd
from rmaplab.trace import OP_KEYS, Op, parse_trace_lines

SEEDS = range(1, 51)
FLAGS = [(False, False), (True, False), (False, True), (True, True)]
SWAP_OPS = {"swapon", "swapoff", "reclaim"}
SWAP_ADVICES = {"free", "pageout"}


def ops_of(seed: int, n: int, **kw: object) -> list[Op]:
    return parse_trace_lines(generate_trace(seed, n, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel_only,no_swap", FLAGS)
def test_traces_validate(kernel_only: bool, no_swap: bool) -> None:
    for seed in SEEDS:
        for n, tasks in ((1, 4), (17, 1), (150, 4), (150, 8)):
            lines = generate_trace(seed, n, tasks=tasks, kernel_only=kernel_only,
                                   no_swap=no_swap)
            assert len(lines) == n
            assert all(isinstance(json.loads(line), dict) for line in lines)
            ops = parse_trace_lines(lines)
            assert ops[-1].op == "snapshot" and ops[-1].label == "end"
            live: set[str] = set()
            since = 0
            for op in ops:
                if op.op == "spawn":
                    live.add(op.task)  # type: ignore[arg-type]
                elif op.op == "fork":
                    live.add(op.child)  # type: ignore[arg-type]
                elif op.op == "exit":
                    live.discard(op.task)  # type: ignore[arg-type]
                assert len(live) <= tasks
                since = 0 if op.op == "snapshot" else since + 1
                assert since <= 12  # a snapshot every ~10 ops
                for addr, pages in ((op.addr, op.pages), (op.new_addr, op.new_pages)):
                    if addr is not None:
                        assert addr + pages * PAGE_SIZE <= WINDOW_START + REGION_PAGES * PAGE_SIZE


def test_zero_ops() -> None:
    assert generate_trace(1, 0) == []


def test_deterministic() -> None:
    for seed in (1, 7, 42):
        for kw in ({}, {"kernel_only": True}, {"no_swap": True, "tasks": 2}):
            first = generate_trace(seed, 200, **kw)  # type: ignore[arg-type]
            assert first == generate_trace(seed, 200, **kw)  # type: ignore[arg-type]
    assert generate_trace(1, 200) != generate_trace(2, 200)


def test_every_op_and_advice_appears() -> None:
    ops = [op for seed in SEEDS for op in ops_of(seed, 120)]
    kinds = Counter(op.op for op in ops)
    assert set(kinds) == set(OP_KEYS), set(OP_KEYS) - set(kinds)
    assert {op.advice for op in ops if op.op == "madvise"} == set(ADVICES)
    mremaps = [op for op in ops if op.op == "mremap"]
    assert any(op.new_addr is not None for op in mremaps)
    assert any(op.new_addr is None for op in mremaps)
    assert any(op.new_pages > op.pages for op in mremaps)  # type: ignore[operator]
    assert any(op.new_pages < op.pages for op in mremaps)  # type: ignore[operator]


def test_fork_trees() -> None:
    """Some fork's parent was itself forked: trees, not just stars."""
    for seed in SEEDS:
        forked = set()
        for op in ops_of(seed, 150):
            if op.op == "fork":
                if op.task in forked:
                    return
                forked.add(op.child)
    pytest.fail("no fork of a forked child in any seed")


def test_ops_collide() -> None:
    """mmaps overlap earlier mmaps of the same task (EEXIST) and accesses miss."""
    overlaps = misses = 0
    for seed in SEEDS:
        mapped: dict[str, set[int]] = {}
        for op in ops_of(seed, 150):
            if op.op == "spawn":
                mapped[op.task] = set()  # type: ignore[index]
            elif op.op == "fork":
                mapped[op.child] = set(mapped[op.task])  # type: ignore[index]
            elif op.addr is not None and op.pages is not None:
                pages = set(range(op.addr // PAGE_SIZE, op.addr // PAGE_SIZE + op.pages))
                have = mapped[op.task]  # type: ignore[index]
                if op.op == "mmap":
                    overlaps += bool(pages & have)
                    have |= pages
                elif op.op == "munmap":
                    have -= pages
                elif op.op in ("read", "write"):
                    misses += not pages <= have
    assert overlaps > 20 and misses > 20


@pytest.mark.parametrize("kernel_only,no_swap", FLAGS[1:])
def test_flags_leave_ops_out(kernel_only: bool, no_swap: bool) -> None:
    for seed in SEEDS:
        for op in ops_of(seed, 150, kernel_only=kernel_only, no_swap=no_swap):
            if kernel_only:
                assert not op.model_only, op
            if no_swap:
                assert op.op not in SWAP_OPS, op
                assert op.advice not in SWAP_ADVICES, op


def test_swapon_early_and_sized() -> None:
    for seed in SEEDS:
        ops = ops_of(seed, 60, swap_pages=64)
        first = next(op for op in ops if op.op == "swapon")
        assert first.line <= 4 and first.pages == 64


@pytest.mark.parametrize("swap_pages", [2, 16, 256])
def test_swap_kept_half_empty(swap_pages: int) -> None:
    """An independent, coarser bound on swapped pages stays within half the area.

    Mapped pages are over-approximated (mmap and mremap targets count unless
    the call surely fails, only munmap removes); each pageout may swap its
    mapped pages, each reclaim its page count; swapoff, or swapon while off,
    starts afresh.
    """
    for seed in SEEDS:
        mapped: dict[str, set[int]] = {}
        sure: dict[str, set[int]] = {}  # surely mapped: an mmap over them fails
        used, on = 0, False
        for op in ops_of(seed, 200, swap_pages=swap_pages):
            if op.op == "spawn":
                mapped[op.task], sure[op.task] = set(), set()  # type: ignore[index]
            elif op.op == "fork":
                mapped[op.child] = set(mapped[op.task])  # type: ignore[index]
                sure[op.child] = set(sure[op.task])  # type: ignore[index]
            elif op.op == "swapon":
                used, on = (used if on else 0), True
            elif op.op == "swapoff":
                used, on = 0, False
            elif op.op == "reclaim":
                used += op.pages  # type: ignore[operator]
            elif op.addr is not None:
                first = op.addr // PAGE_SIZE
                pages = set(range(first, first + op.pages))  # type: ignore[operator]
                have, certain = mapped[op.task], sure[op.task]  # type: ignore[index]
                if op.op == "mmap":
                    if not pages & have:
                        certain |= pages
                    if not pages & certain or not pages & have:
                        have |= pages
                elif op.op == "munmap":
                    have -= pages
                    certain -= pages
                elif op.op == "mremap":
                    start = (op.new_addr or op.addr) // PAGE_SIZE
                    target = set(range(start, start + op.new_pages))  # type: ignore[operator]
                    certain -= pages | target
                    if pages <= have:
                        have |= target
                elif op.op == "madvise" and op.advice == "pageout":
                    used += len(pages & have)
            assert used <= swap_pages // 2, (seed, op)


def test_bad_arguments() -> None:
    for kw in ({"ops": -1}, {"ops": 5, "tasks": 0}, {"ops": 5, "swap_pages": 0}):
        with pytest.raises(ValueError):
            generate_trace(1, **kw)  # type: ignore[arg-type]


def test_cli(tmp_path: object) -> None:
    runner = CliRunner()
    result = runner.invoke(gen_trace_cmd, ["--seed", "5", "--ops", "40", "--tasks", "3",
                                           "--kernel-only"])
    assert result.exit_code == 0, result.output
    expected = generate_trace(5, 40, tasks=3, kernel_only=True)
    assert result.output == "\n".join(expected) + "\n"
    out = tmp_path / "t.jsonl"  # type: ignore[operator]
    result = runner.invoke(gen_trace_cmd, ["--seed", "5", "--ops", "40", "--no-swap",
                                           "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").splitlines() == generate_trace(5, 40, no_swap=True)
    assert runner.invoke(gen_trace_cmd, ["--ops", "4"]).exit_code == 2
    assert runner.invoke(gen_trace_cmd, ["--seed", "1", "--ops", "-1"]).exit_code == 2
