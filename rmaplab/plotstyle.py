# SPDX-License-Identifier: GPL-2.0-only
"""One look per rmap scheme, the same in every plot rmaplab draws.

SCHEME_STYLE gives each scheme a colour (the first five of matplotlib's
tab10) and a marker of its own, so a scheme is recognised from plot to plot
and, in grey print, by its marker. Series that are not schemes (an
experiment's advice, unuse or shape) take OTHER_STYLES in their natural
order, in colours no scheme uses. DASHES tells apart the values of a second
parameter drawn in the same colour (contention's N).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

SCHEME_STYLE: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "modern": MappingProxyType({"color": "#1f77b4", "marker": "o"}),
    "anon_vma_chain": MappingProxyType({"color": "#ff7f0e", "marker": "s"}),
    "anon_vma": MappingProxyType({"color": "#2ca02c", "marker": "^"}),
    "anonmm": MappingProxyType({"color": "#d62728", "marker": "D"}),
    "pte_chain": MappingProxyType({"color": "#9467bd", "marker": "v"}),
})

#: for series that are not schemes, in order: colours no scheme has
OTHER_STYLES: tuple[Mapping[str, str], ...] = (
    MappingProxyType({"color": "#8c564b", "marker": "o"}),
    MappingProxyType({"color": "#e377c2", "marker": "s"}),
    MappingProxyType({"color": "#17becf", "marker": "^"}),
    MappingProxyType({"color": "#7f7f7f", "marker": "D"}),
    MappingProxyType({"color": "#bcbd22", "marker": "v"}),
)

#: line styles for the values of a second parameter, in order
DASHES = ("-", "--", ":", "-.")

#: a scheme the table knows nothing of (a new one): grey, a plus
UNKNOWN = MappingProxyType({"color": "#444444", "marker": "P"})


def series_style(key: str, value: object, order: list[object]) -> dict[str, str]:
    """Colour and marker of one series: the scheme's own when key is
    "scheme", else the value's place in order (its natural order)."""
    if key == "scheme":
        return dict(SCHEME_STYLE.get(str(value), UNKNOWN))
    k = order.index(value) if value in order else len(order)
    return dict(OTHER_STYLES[k % len(OTHER_STYLES)])
