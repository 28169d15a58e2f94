# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab replay``: run a trace on the model and write its records.

Every path is checked before anything runs (no output may be the trace or
another output); the trace is validated whole, then run, each record
written as its op finishes, and each output file renamed into place at the
end, so a failed run leaves existing files as they were. --fail-alloc makes one
allocation fail (the fault injection of rmaplab.slab), for error paths. A model bug
(status 70) keeps what was computed as FILE.partial. With --check, an
invariant the checker finds violated under a variant buggy on purpose
(docs/posted.md) is that variant's bug, found: status 1, the outputs kept
as FILE.partial too. One summary line goes
to stderr at the end (not with --quiet).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import click

from .budget import OverBudget, check_trace
from .cliutil import (
    EXIT_DIFFER,
    EXIT_INTERNAL,
    SCHEME,
    STDIO,
    CliError,
    Files,
    Output,
    era_option,
    guard,
    max_memory_option,
    quiet_options,
    read_trace_arg,
    say,
)
from .errors import InvariantViolated
from .machine import DEFAULT_FRAMES, Config, Machine
from .progress import op_progress
from .replay import run_op, write_snapshot
from .rmap import VARIANTS
from .slab import KINDS
from .trace import refuse_version2


class FailAlloc(click.ParamType):
    """``--fail-alloc KIND:N``: which allocation to fail (Slab.fail_kinds, fail_at)."""

    name = "kind:n"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value  # type: ignore[return-value]  # already converted
        kind, _, n = str(value).partition(":")
        if kind not in KINDS or not n.isdigit() or int(n) < 1:
            self.fail(f"{value!r}: give KIND:N, KIND one of {', '.join(KINDS)} and N a "
                      "positive count (the N-th allocation of KIND fails)", param, ctx)
        return kind, int(n)


class _ModelBug(Exception):
    """An exception from inside the model, with the trace line it came from."""

    def __init__(self, line: int, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.line = line
        self.cause = cause


def _dump(obj: Mapping[str, object]) -> str:
    return json.dumps(obj) + "\n"


@click.command("replay")
@click.argument("trace", metavar="TRACE")
@click.option("--scheme", type=SCHEME, default="modern", show_default=True,
              help="rmap scheme to model.")
@click.option("--results", "results_path", required=True, metavar="FILE",
              help="Where to write one result per trace op (JSON Lines; '-': stdout).")
@click.option("--snapshots", "snapshots_path", required=True, metavar="FILE",
              help="Where to write the snapshots (JSON Lines; '-': stdout).")
@click.option("--stats", "stats_path", default=None, metavar="FILE",
              help="Where to write stats at each snapshot and at the end ('-': stdout).")
@click.option("--check", is_flag=True,
              help="Run the invariant checker after every op (a violation under a variant "
                   "buggy on purpose exits 1).")
@click.option("--frames", type=click.IntRange(1, 1 << 31), default=DEFAULT_FRAMES,
              show_default=True, help="Physical frames of the machine.")
@click.option("--fail-alloc", type=FailAlloc(), default=None, metavar="KIND:N",
              help="Fault injection: the N-th allocation of slab objects KIND (one of "
                   f"{', '.join(KINDS)}) in the run fails, as kmem_cache_alloc returning "
                   "NULL (the op that makes it gets ENOMEM or unwinds).")
@max_memory_option("the replay")
@era_option
@quiet_options
def replay_cmd(trace: str, scheme: str, results_path: str, snapshots_path: str,
               stats_path: str | None, check: bool, frames: int,
               fail_alloc: tuple[str, int] | None, max_memory: int | None, era: str,
               quiet: bool, no_progress: bool) -> None:
    """Replay TRACE ('-': stdin) on the model (docs/trace-format.md, version 1)."""

    def body() -> int:
        t0 = time.perf_counter()
        files = Files()
        files.input("TRACE", trace)
        rf = files.output("--results", results_path)
        sf = files.output("--snapshots", snapshots_path)
        tf: Output | None = files.output("--stats", stats_path) if stats_path else None
        files.check()
        ops = read_trace_arg(trace)
        refuse_version2(ops)  # TraceError, status 2, before any output is opened
        try:  # before any output is opened
            check_trace(ops, max_memory=max_memory, scheme=scheme)
        except OverBudget as e:
            raise CliError(f"{'stdin' if trace == STDIO else trace}: {e}") from None
        m = Machine(Config(scheme=scheme, frames=frames, check=check, era=era))
        if fail_alloc is not None:
            m.slab.fail_kinds = frozenset({fail_alloc[0]})
            m.slab.fail_at = fail_alloc[1]
        failed = snapshots = 0
        try:
            with files.opened(keep_partial=lambda e: isinstance(e, _ModelBug)), \
                    op_progress("replay", len(ops), enabled=not (quiet or no_progress)) as advance:
                for op in ops:
                    advance()
                    try:
                        res, snap = run_op(m, op)
                    except Exception as e:
                        raise _ModelBug(op.line, e) from e
                    failed += not res["ok"]
                    rf.write(_dump(res))
                    if snap is not None:
                        snapshots += 1
                        write_snapshot(sf, snap)
                        if tf:
                            assert op.label is not None  # only a snapshot op returns one
                            tf.write(_dump(m.stats(op.label)))
                if tf:
                    tf.write(_dump(m.stats("end")))
        except _ModelBug as bug:
            kept = ", ".join(files.kept) or "the outputs written so far"
            if isinstance(bug.cause, InvariantViolated) and scheme in VARIANTS:
                say("replay", f"invariant violated after trace line {bug.line} "
                    f"(--check, CONFIG_DEBUG_VM): {bug.cause}; {scheme} is buggy on purpose "
                    f"(docs/posted.md); the records up to the previous op are in {kept}")
                return EXIT_DIFFER
            say("replay", f"internal error (a bug in rmaplab, please report it with the trace) "
                f"at trace line {bug.line}: {bug}; the records up to the previous op are in "
                f"{kept}")
            return EXIT_INTERNAL
        if not quiet:
            where = "stdin" if trace == STDIO else trace
            say("replay", f"{where}: {len(ops)} ops run on {scheme}, {failed} failed, "
                f"{snapshots} snapshots, {time.perf_counter() - t0:.2f} s")
        return 0

    guard("replay", body)
