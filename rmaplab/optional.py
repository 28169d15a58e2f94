# SPDX-License-Identifier: GPL-2.0-only
"""Optional dependencies, imported when first needed, with the install hint."""

from __future__ import annotations

import importlib
from types import ModuleType


def require_pandas(what: str) -> ModuleType:
    """The pandas module, or ImportError saying how to install it for `what`."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise ImportError(f"{what} needs pandas: pip install 'rmaplab[pandas]'") from None
