# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab schemes``: the rmap schemes the model implements, newest first,
then the variants buggy on purpose (by name only, never in ``all``)."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from .cliutil import guard, json_option, print_json, quiet_options
from .rmap import SCHEMES, VARIANTS

#: name -> (era, author, one line on what it is); sources in docs/references.md.
ABOUT: dict[str, tuple[str, str, str]] = {
    "modern": ("today (6.18)", "Linux mm developers",
               "anon_vma_chain plus a root anon_vma locking a fork tree and reuse of "
               "empty ancestors (2015)"),
    "anon_vma_chain": ("2010 (2.6.34)", "Rik van Riel",
                       "each VMA links by chain objects to its own anon_vma and every "
                       "ancestor's; a walk sees only VMAs that can map the page"),
    "anon_vma": ("2004 (2.6.7-2.6.33)", "Andrea Arcangeli",
                 "object-based: one anon_vma lists every VMA of a fork family; a walk "
                 "visits them all"),
    "anonmm": ("2004 (2.6.6 era)", "Hugh Dickins",
               "object-based by mm: a page is found through the list of mms forked from "
               "one exec, at its one address"),
    "pte_chain": ("2002 (2.5)", "Rik van Riel",
                  "pte-based: each page holds a direct pointer, or a chain, to every PTE "
                  "that maps it"),
    "anon_vma_chain_posted": ("2010 (as posted)", "Rik van Riel",
                              "buggy on purpose: the January 2010 patch before review "
                              "(head insertion, swap-in mapping, fork error-path leak); "
                              "docs/posted.md"),
    "modern_degree": ("2015-2022", "Konstantin Khlebnikov",
                      "buggy on purpose: modern with the single anon_vma->degree counter "
                      "(7a3ef208e662) that 2555283eb40d split; docs/posted.md"),
}


@click.command("schemes")
@json_option
@quiet_options
def schemes_cmd(as_json: bool, quiet: bool, no_progress: bool) -> None:
    """List the rmap schemes (the names --scheme and --schemes take), newest first,
    then the variants buggy on purpose (taken by name, not part of 'all')."""

    def body() -> int:
        names = (*SCHEMES, *VARIANTS)
        rows = [{"name": name, "era": ABOUT[name][0], "author": ABOUT[name][1],
                 "description": ABOUT[name][2], "buggy_on_purpose": name in VARIANTS}
                for name in names]
        if as_json:
            print_json(rows)
            return 0
        table = Table(title="rmap schemes (--scheme NAME, --schemes LIST or all)")
        for col in ("name", "era", "author", "description"):
            table.add_column(col, overflow="fold", no_wrap=col != "description")
        for name in names:
            era, author, about = ABOUT[name]
            shown = f"{name} (buggy on purpose)" if name in VARIANTS else name
            table.add_row(shown, era, author, about)
        Console(width=None if sys.stdout.isatty() else 120).print(table)
        return 0

    guard("schemes", body)
