# SPDX-License-Identifier: GPL-2.0-only
"""Reverse mapping: the protocol, the shared core, and one module per scheme."""

from __future__ import annotations

from .protocol import RmapScheme, WalkStats


def scheme_class(name: str) -> type[RmapScheme]:
    """The scheme class for a name given on the command line."""
    from .anon_vma import AnonVmaScheme
    from .anon_vma_chain import AnonVmaChainScheme
    from .anonmm import AnonmmScheme
    from .modern import ModernScheme
    from .pte_chain import PteChainScheme

    schemes: dict[str, type[RmapScheme]] = {
        "modern": ModernScheme,
        "anon_vma_chain": AnonVmaChainScheme,
        "anon_vma": AnonVmaScheme,
        "anonmm": AnonmmScheme,
        "pte_chain": PteChainScheme,
    }
    try:
        return schemes[name]
    except KeyError:
        raise ValueError(f"unknown rmap scheme {name!r}; "
                         f"choose one of {', '.join(schemes)}") from None


#: Every scheme, newest first: ``modern`` is the reference the others are
#: compared with; then the 2010 anon_vma_chain (seed 002), Andrea Arcangeli's
#: 2004 anon_vma it replaced, Hugh Dickins' 2004 anonmm (seed 000) and Rik van
#: Riel's 2002 pte_chain (seed 001).
SCHEMES = ("modern", "anon_vma_chain", "anon_vma", "anonmm", "pte_chain")

__all__ = ["SCHEMES", "RmapScheme", "WalkStats", "scheme_class"]
