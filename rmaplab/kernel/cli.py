# SPDX-License-Identifier: GPL-2.0-only
"""The ``kernel-run`` and ``kernel-diff`` commands, and their exit statuses.

Statuses (docs/cli.md): 0 ran (kernel-diff: agree), 1 differ
(kernel-diff), 2 invalid trace or arguments (nothing ran), 3 cannot run on
this machine, 4 the kernel disagreed with itself (kernel-diff), 70 internal
error.  SIGINT and SIGTERM end a run after it has cleaned up, with 130/143.

Also runnable as ``python -m rmaplab.kernel.cli kernel-run ...``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

from ..cliutil import (
    EXIT_CANNOT_RUN,
    SCHEME,
    STDIO,
    Files,
    Handlers,
    Output,
    guard,
    json_option,
    quiet_options,
    read_trace_arg,
    say,
)
from ..progress import op_progress
from ..trace import Op, refuse_version2
from . import diff, runner
from .observe import KernelUnavailable
from .pin import CpuChoice
from .runner import Interrupted


def _handlers(verb: str) -> Handlers:
    def unavailable(exc: BaseException) -> int:
        say(verb, f"cannot run traces on this machine: {exc}")
        return EXIT_CANNOT_RUN

    def interrupted(exc: BaseException) -> int:
        say(verb, f"interrupted by {exc}; workers, swap file and settings cleaned up")
        return 128 + getattr(exc, "signum", 2)

    return {KernelUnavailable: unavailable, Interrupted: interrupted}


def guarded(verb: str, body: Callable[[], int]) -> None:
    """Run a kernel command's body and exit with its status (docs/cli.md)."""
    guard(verb, body, _handlers(verb))


def _say_pin(choice: CpuChoice) -> None:
    say("kernel-run", f"pinned to {choice.describe()}")


def write_jsonl(out: Output, objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        out.write(json.dumps(obj) + "\n")


@click.command("kernel-run")
@click.argument("trace", metavar="TRACE")
@click.option("--results", "results_path", default=STDIO, show_default=True, metavar="FILE",
              help="Where to write the results, one JSON object per op line ('-': stdout).")
@click.option("--snapshots", "snapshots_path", default=None, metavar="FILE",
              help="Where to write the snapshots, one JSON object per line ('-': stdout).")
@click.option("--cpu", type=click.IntRange(min=0), default=None,
              help="Pin the run to this CPU instead of the one servicing the swap disk's "
                   "interrupts (to study the rule; results may then not be repeatable).")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
              help="Wait this long for another kernel run to finish (default: refuse at once).")
@click.option("-v", "--verbose", is_flag=True,
              help="Say on stderr which CPU the run is pinned to and why (swap disk, its "
                   "interrupts and the CPUs that serviced them).")
@quiet_options
def kernel_run_cmd(trace: str, results_path: str, snapshots_path: str | None,
                   cpu: int | None, wait_lock: float, verbose: bool, quiet: bool,
                   no_progress: bool) -> None:
    """Run TRACE ('-': stdin) on this machine's kernel (needs root); write results and
    snapshots."""

    def body() -> int:
        if cpu is not None and cpu not in os.sched_getaffinity(0):
            raise click.BadParameter(f"CPU {cpu} is not one this process may run on "
                                     f"(allowed: {sorted(os.sched_getaffinity(0))})",
                                     param_hint="--cpu")
        files = Files()
        files.input("TRACE", trace)
        results_out = files.output("--results", results_path)
        snapshots_out = files.output("--snapshots", snapshots_path) if snapshots_path else None
        files.check()
        ops = read_trace_arg(trace)
        refuse_version2(ops, "run on the kernel")  # status 2, before anything runs
        with op_progress("kernel-run", len(ops), enabled=not (quiet or no_progress)) as advance:
            results, snapshots = runner.run_on_kernel(
                ops, cpu=cpu, wait_lock=wait_lock, on_op=advance,
                on_pin=_say_pin if verbose else None)
        with files.opened():
            write_jsonl(results_out, results)
            if snapshots_out is not None:
                write_jsonl(snapshots_out, snapshots)
        return 0

    guarded("kernel-run", body)


@click.command("kernel-diff")
@click.argument("trace", metavar="TRACE")
@click.option("--scheme", type=SCHEME, default=None,
              help="rmap scheme of the model (default: the model's default, modern).")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
              help="Wait this long for another kernel run to finish (default: refuse at once).")
@json_option
@quiet_options
def kernel_diff_cmd(trace: str, scheme: str | None, wait_lock: float, as_json: bool,
                    quiet: bool, no_progress: bool) -> None:
    """Compare the model with this machine's kernel on TRACE ('-': stdin; needs root).

    The kernel runs twice; if its two answers differ the trace is reported
    as nondeterministic (status 4).  Otherwise status 0 means the model
    agrees, 1 that it differs (the first divergences are printed; --json
    prints them all, up to 1,000).
    """

    def body() -> int:
        ops: list[Op] = read_trace_arg(trace)
        refuse_version2(ops, "run on the kernel")  # status 2, before anything runs

        def run_kernel(prefix: list[Op]) -> tuple[list[dict], list[dict]]:
            with op_progress("kernel run", len(prefix),
                             enabled=not (quiet or no_progress)) as advance:
                return runner.run_on_kernel(prefix, wait_lock=wait_lock, on_op=advance)

        def echo(text: str) -> None:
            if as_json or not quiet:
                click.echo(text)

        return diff.kernel_diff(ops, scheme=scheme, echo=echo, run_kernel=run_kernel,
                                as_json=as_json)

    guarded("kernel-diff", body)


@click.group()
def _standalone() -> None:
    """rmaplab kernel commands (standalone entry point)."""


_standalone.add_command(kernel_run_cmd)
_standalone.add_command(kernel_diff_cmd)

if __name__ == "__main__":
    _standalone()
