# SPDX-License-Identifier: GPL-2.0-only
"""The ``rmaplab`` command line: a thin layer over the library API."""

from __future__ import annotations

import click

from . import __version__
from .cliutil import DOCS
from .experiment_cli import experiment_cmd
from .gentrace_cli import gen_trace_cmd
from .kernel.cli import kernel_diff_cmd, kernel_run_cmd
from .replay_cli import replay_cmd
from .schemes_cli import schemes_cmd
from .show_cli import show_cmd
from .sweep_cli import report_cmd, sweep_cmd

EPILOG = f"""\b
Every verb: '-' reads stdin or writes stdout wherever it takes a file;
-q/--quiet and --no-progress; --json where it prints a table. Exit status:
0 ok, 1 differ or some points failed, 2 bad input or unwritable output,
3 cannot run here, 4 the kernel disagreed with itself, 70 a bug in rmaplab,
141 a reader closed the pipe early, 130/143 interrupted.
Completion: eval "$(_RMAPLAB_COMPLETE=bash_source rmaplab)"
All of it: {DOCS}
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="rmaplab")
def main() -> None:
    """rmaplab: Linux anonymous memory and its reverse mapping, modelled and measured."""


# Each command lives beside the code it drives.
for _cmd in (replay_cmd, gen_trace_cmd, kernel_run_cmd, kernel_diff_cmd, experiment_cmd,
             sweep_cmd, report_cmd, show_cmd, schemes_cmd):
    main.add_command(_cmd)
