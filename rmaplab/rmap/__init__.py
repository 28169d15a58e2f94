# SPDX-License-Identifier: GPL-2.0-only
"""Reverse mapping: the protocol, the shared core, and one module per scheme."""

from __future__ import annotations

from .protocol import RmapScheme, WalkStats


def scheme_class(name: str) -> type[RmapScheme]:
    """The scheme class for a name given on the command line."""
    from .anon_vma_chain import AnonVmaChainScheme
    from .modern import ModernScheme

    schemes: dict[str, type[RmapScheme]] = {
        "modern": ModernScheme,
        "anon_vma_chain": AnonVmaChainScheme,
    }
    try:
        return schemes[name]
    except KeyError:
        raise ValueError(f"unknown rmap scheme {name!r}; choose one of {', '.join(schemes)}") from None


SCHEMES = ("modern", "anon_vma_chain")

__all__ = ["RmapScheme", "WalkStats", "scheme_class", "SCHEMES"]
