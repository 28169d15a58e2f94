# SPDX-License-Identifier: GPL-2.0-only
"""The ``rmaplab`` command line: a thin layer over the library API."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rmaplab")
def main() -> None:
    """rmaplab: Linux anonymous memory and its reverse mapping, modelled and measured."""


def _register() -> None:
    # Each command lives beside the code it drives; imported here so that
    # ``rmaplab --help`` lists them all.
    from .experiment_cli import experiment_cmd
    from .gentrace import gen_trace_cmd
    from .kernel.cli import kernel_diff_cmd, kernel_run_cmd
    from .replay_cli import replay_cmd
    from .show_cli import show_cmd
    from .sweep_cli import report_cmd, sweep_cmd

    for cmd in (replay_cmd, gen_trace_cmd, kernel_run_cmd, kernel_diff_cmd, experiment_cmd,
                sweep_cmd, report_cmd, show_cmd):
        main.add_command(cmd)


_register()
