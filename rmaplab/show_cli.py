# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab show TRACE --at LINE``: the rmap structures at a trace line,
drawn by Graphviz (show.py builds the picture).

Exit status: 0 drawn, 2 bad input (the trace, the line, the scheme; named),
3 Graphviz's dot is missing (the graph is written as a .dot file anyway,
and the message says how to install it), 70 internal error (docs/cli.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from .cliutil import (
    EXIT_CANNOT_RUN,
    SCHEME,
    STDIO,
    CliError,
    Files,
    era_option,
    guard,
    quiet_options,
    read_trace_arg,
    say,
)
from .show import FORMATS, ShowInputError, render, show


@click.command("show")
@click.argument("trace", metavar="TRACE")
@click.option("--at", "at", type=int, required=True, metavar="LINE",
              help="Replay the trace up to and including this line.")
@click.option("--scheme", type=SCHEME, default="modern", show_default=True,
              help="rmap scheme to draw.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="svg", show_default=True)
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Output file (default: TRACE-LINE-SCHEME.FORMAT here; '-': stdout).")
@click.option("--pages", type=click.IntRange(0, 64), default=6, show_default=True,
              help="How many pages to draw with their PTEs and walks.")
@era_option
@quiet_options
def show_cmd(trace: str, at: int, scheme: str, fmt: str, output: str | None,
             pages: int, era: str, quiet: bool, no_progress: bool) -> None:
    """Draw the rmap structures of TRACE ('-': stdin) at line LINE with Graphviz.

    Exit status: 0 drawn, 2 bad input (named), 3 Graphviz's dot is missing
    (the .dot file is written anyway), 70 internal error."""

    def body() -> int:
        stem = "stdin" if trace == STDIO else Path(trace).stem
        out = output or f"{stem}-{at}-{scheme}.{fmt}"
        files = Files()
        files.input("TRACE", trace)
        files.output("--output", out)
        files.check()
        # show() reads a file itself (its name goes in the picture's title)
        source: str | list = read_trace_arg(trace) if trace == STDIO else trace
        try:
            data = show(source, at=at, scheme=scheme, fmt="dot", pages=pages, era=era)
        except ShowInputError as e:
            raise CliError(str(e)) from None
        code = 0
        if fmt != "dot":
            try:
                data = render(data.decode(), fmt)
            except FileNotFoundError:
                out = str(Path(out).with_suffix(".dot")) if out != STDIO else out
                say("show", "Graphviz's dot is not installed (apt-get install graphviz); "
                    f"writing the graph as dot to {out} instead")
                code = EXIT_CANNOT_RUN
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                raise RuntimeError(f"dot failed: {e}") from None
        files = Files()
        files.input("TRACE", trace)
        target = files.output("--output", out, binary=True)
        files.check()
        with files.opened():
            target.write(data)
        if out != STDIO and not quiet:
            say("show", f"wrote {out}")
        return code

    guard("show", body)
