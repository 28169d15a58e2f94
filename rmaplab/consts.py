# SPDX-License-Identifier: GPL-2.0-only
"""Constants of the trace format and the modelled architecture."""

# The values a trace may give for prot and advice (their Literal types are in uapi.py).
from .uapi import ADVICES, PROTS

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

#: The trace window: every range a trace names lies in [WINDOW_START, WINDOW_END).
WINDOW_START = 0x100000000000
WINDOW_END = 0x200000000000

#: Largest `pages`/`new_pages` a trace op may name.
MAX_PAGES = 1 << 20

__all__ = ["ADVICES", "MAX_PAGES", "PAGE_SHIFT", "PAGE_SIZE", "PROTS", "WINDOW_END",
           "WINDOW_START"]
