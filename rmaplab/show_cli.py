# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab show TRACE --at LINE``: the rmap structures at a trace line,
drawn by Graphviz (show.py builds the picture).

Exit status: 0 drawn, 2 bad input (the trace, the line, the scheme; named),
3 Graphviz's dot is missing (the graph is written as a .dot file anyway,
and the message says how to install it), 70 internal error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from .rmap import SCHEMES
from .show import FORMATS, ShowInputError, render, show
from .trace import TraceError


@click.command("show")
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--at", "at", type=int, required=True, metavar="LINE",
              help="Replay the trace up to and including this line.")
@click.option("--scheme", default="modern", show_default=True, help="rmap scheme to draw.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="svg", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: TRACE-LINE-SCHEME.FORMAT here; '-': stdout).")
@click.option("--pages", type=click.IntRange(0, 64), default=6, show_default=True,
              help="How many pages to draw with their PTEs and walks.")
def show_cmd(trace: Path, at: int, scheme: str, fmt: str, output: Path | None,
             pages: int) -> None:
    """Draw the rmap structures of TRACE at line LINE with Graphviz.

    Exit status: 0 drawn, 2 bad input (named), 3 Graphviz's dot is missing
    (the .dot file is written anyway), 70 internal error."""
    def fail(msg: str, code: int = 2) -> None:
        click.echo(f"rmaplab show: {msg}", err=True)
        sys.exit(code)

    if scheme not in SCHEMES:
        fail(f"--scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    out = output or Path(f"{trace.stem}-{at}-{scheme}.{fmt}")
    try:
        dot_text = show(trace, at=at, scheme=scheme, fmt="dot", pages=pages)
    except TraceError as e:
        fail(f"invalid trace {trace}: {e}")
    except ShowInputError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot read {trace}: {e.strerror}")
    except Exception as e:  # noqa: BLE001 - a model bug, said so
        fail(f"internal error (a bug in rmaplab) replaying {trace}: {type(e).__name__}: {e}", 70)
    data, code = dot_text, 0
    if fmt != "dot":
        try:
            data = render(dot_text.decode(), fmt)
        except FileNotFoundError:
            out = out.with_suffix(".dot") if str(out) != "-" else out
            click.echo("rmaplab show: Graphviz's dot is not installed (apt-get install graphviz); "
                       f"writing the graph as dot to {out} instead", err=True)
            code = 3
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            fail(f"dot failed: {e}", 70)
    try:
        if str(out) == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            out.write_bytes(data)
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror}")
    if str(out) != "-":
        click.echo(f"wrote {out}", err=True)
    sys.exit(code)
