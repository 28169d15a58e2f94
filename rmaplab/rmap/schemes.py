# SPDX-License-Identifier: GPL-2.0-only
"""Every rmap scheme by the name a trace or the command line gives it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anon_vma import AnonVmaScheme
from .anon_vma_chain import AnonVmaChainScheme
from .anonmm import AnonmmScheme
from .modern import ModernScheme
from .posted import AnonVmaChainPostedScheme, ModernDegreeScheme
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

#: The variants buggy on purpose (rmaplab.uapi.VARIANTS, docs/posted.md): taken
#: by name only, never part of "all" nor of the scheme-agreement tests.
VARIANT_CLASSES: Mapping[str, type[RmapScheme]] = MappingProxyType({
    "anon_vma_chain_posted": AnonVmaChainPostedScheme,
    "modern_degree": ModernDegreeScheme,
})


def scheme_class(name: str) -> type[RmapScheme]:
    """The scheme class for a name given on the command line (a scheme or a variant).

    Raises ValueError naming the choices when name is neither.
    """
    cls = SCHEME_CLASSES.get(name) or VARIANT_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown rmap scheme {name!r}; choose one of "
                         f"{', '.join(SCHEME_CLASSES)} (or a variant buggy on purpose: "
                         f"{', '.join(VARIANT_CLASSES)})")
    return cls


__all__ = ["SCHEME_CLASSES", "VARIANT_CLASSES", "scheme_class"]
