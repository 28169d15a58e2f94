# SPDX-License-Identifier: GPL-2.0-only
"""Reverse mapping: the protocol, the shared core, and one module per scheme.

Layers inside the package, top to bottom: schemes.py (the registry by name)
-> one module per scheme (modern, anon_vma_chain, anon_vma, anonmm,
pte_chain; posted: the variants buggy on purpose) -> walk_plan.py (batched
walks from their answers) and core.py (the scheme-independent half of
mm/rmap.c) -> protocol.py (the hooks every scheme implements). This file
imports only the protocol, so the state (mm_state.py) can name RmapScheme
without pulling the schemes in.
"""

from __future__ import annotations

from ..uapi import SCHEMES, VARIANTS, SchemeName, VariantName
from .protocol import RmapScheme, WalkStats

__all__ = ["SCHEMES", "VARIANTS", "RmapScheme", "SchemeName", "VariantName", "WalkStats"]
