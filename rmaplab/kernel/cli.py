# SPDX-License-Identifier: GPL-2.0-only
"""The ``kernel-run`` and ``kernel-diff`` commands, and their exit statuses.

Statuses follow TRACE_FORMAT.md: 0 ran (kernel-diff: agree), 1 differ
(kernel-diff), 2 invalid trace or arguments (nothing ran), 3 cannot run on
this machine, 4 the kernel disagreed with itself (kernel-diff), 70 internal
error.  SIGINT and SIGTERM end a run after it has cleaned up, with 130/143.

Also runnable as ``python -m rmaplab.kernel.cli kernel-run ...``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import IO, Any

import click

from ..progress import op_progress
from ..rmap import SCHEMES
from ..trace import Op, TraceError, load_trace
from . import diff, runner  # looked up at call time: tests replace their entry points
from .observe import KernelUnavailable
from .runner import Interrupted

EXIT_INVALID, EXIT_CANNOT_RUN, EXIT_INTERNAL = 2, 3, 70


def _err(text: str) -> None:
    click.echo(text, err=True)


def guarded(body: Callable[[], int]) -> int:
    """Run a command body, mapping each way it can end to its exit status."""
    try:
        return body()
    except TraceError as exc:
        _err(f"rmaplab: invalid trace: {exc}")
        return EXIT_INVALID
    except click.ClickException as exc:
        _err(f"rmaplab: {exc.format_message()}")
        return EXIT_INVALID
    except KernelUnavailable as exc:
        _err(f"rmaplab: cannot run traces on this machine: {exc}")
        return EXIT_CANNOT_RUN
    except Interrupted as exc:
        _err(f"rmaplab: interrupted by {exc}; workers, swap file and settings cleaned up")
        return 128 + exc.signum
    except BrokenPipeError:
        # A reader that went away (``| head``): stop quietly, as shell tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        _err("rmaplab: interrupted")
        return 128 + signal.SIGINT
    except Exception:  # noqa: BLE001 - anything else is our bug, and says so
        _err("rmaplab: internal error (a bug in rmaplab, please report it with the trace):\n"
             + traceback.format_exc())
        return EXIT_INTERNAL


def _open_out(path: str) -> IO[str]:
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror}") from None


def write_jsonl(f: IO[str], objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        f.write(json.dumps(obj) + "\n")
    f.flush()


@click.command("kernel-run")
@click.argument("trace", type=click.Path(dir_okay=False, allow_dash=False))
@click.option("--results", "results_path", default="-", show_default=True, metavar="FILE",
              help="Where to write the results, one JSON object per op line ('-': stdout).")
@click.option("--snapshots", "snapshots_path", default=None, metavar="FILE",
              help="Where to write the snapshots, one JSON object per line.")
@click.option("--cpu", type=int, default=None,
              help="CPU to pin every process of the run to (default: the last allowed one).")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
              help="Wait this long for another kernel run to finish (default: refuse at once).")
def kernel_run_cmd(trace: str, results_path: str, snapshots_path: str | None,
                   cpu: int | None, wait_lock: float) -> None:
    """Run TRACE on this machine's kernel (needs root); write results and snapshots."""

    def body() -> int:
        ops = load_trace(trace)
        outs = [_open_out(results_path)]
        if snapshots_path is not None:
            outs.append(_open_out(snapshots_path))
        try:
            with op_progress("kernel-run", len(ops)) as advance:
                results, snapshots = runner.run_on_kernel(ops, cpu=cpu, wait_lock=wait_lock,
                                                   on_op=advance)
            write_jsonl(outs[0], results)
            if len(outs) > 1:
                write_jsonl(outs[1], snapshots)
        finally:
            for f in outs:
                if f is not sys.stdout:
                    f.close()
        return 0

    sys.exit(guarded(body))


@click.command("kernel-diff")
@click.argument("trace", type=click.Path(dir_okay=False, allow_dash=False))
@click.option("--scheme", default=None, metavar="NAME",
              help="rmap scheme of the model (default: the model's default).")
@click.option("--wait-lock", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
              help="Wait this long for another kernel run to finish (default: refuse at once).")
def kernel_diff_cmd(trace: str, scheme: str | None, wait_lock: float) -> None:
    """Compare the model with this machine's kernel on TRACE (needs root).

    The kernel runs twice; if its two answers differ the trace is reported
    as nondeterministic (status 4).  Otherwise status 0 means the model
    agrees, 1 that it differs (the first divergences are printed).
    """

    def body() -> int:
        ops: list[Op] = load_trace(trace)
        if scheme is not None and scheme not in SCHEMES:
            # Checked before the kernel runs rather than after both.
            raise click.BadParameter(f"unknown scheme {scheme!r}; choose one of "
                                     + ", ".join(SCHEMES), param_hint="--scheme")

        def run_kernel(prefix: list[Op]) -> tuple[list[dict], list[dict]]:
            with op_progress("kernel run", len(prefix)) as advance:
                return runner.run_on_kernel(prefix, wait_lock=wait_lock, on_op=advance)

        return diff.kernel_diff(ops, scheme=scheme, echo=click.echo, run_kernel=run_kernel)

    sys.exit(guarded(body))


@click.group()
def _standalone() -> None:
    """rmaplab kernel commands (standalone entry point)."""


_standalone.add_command(kernel_run_cmd)
_standalone.add_command(kernel_diff_cmd)

if __name__ == "__main__":
    _standalone()
