# SPDX-License-Identifier: GPL-2.0-only
"""Every rmap scheme by the name a trace or the command line gives it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anon_vma import AnonVmaScheme
from .anon_vma_chain import AnonVmaChainScheme
from .anonmm import AnonmmScheme
from .modern import ModernScheme
from .protocol import RmapScheme
from .pte_chain import PteChainScheme

#: In the order of rmaplab.rmap.SCHEMES (newest first); read-only.
SCHEME_CLASSES: Mapping[str, type[RmapScheme]] = MappingProxyType({
    "modern": ModernScheme,
    "anon_vma_chain": AnonVmaChainScheme,
    "anon_vma": AnonVmaScheme,
    "anonmm": AnonmmScheme,
    "pte_chain": PteChainScheme,
})


def scheme_class(name: str) -> type[RmapScheme]:
    """The scheme class for a name given on the command line.

    Raises ValueError naming the choices when name is not a scheme.
    """
    try:
        return SCHEME_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown rmap scheme {name!r}; "
                         f"choose one of {', '.join(SCHEME_CLASSES)}") from None


__all__ = ["SCHEME_CLASSES", "scheme_class"]
