"""What the native CPU kernels behind the sparse modules are, in this process."""

from __future__ import annotations

import os
from typing import Any

from graphwire import _native
from graphwire._native import ops as _kernels

__all__ = ["kernel_info"]


def kernel_info() -> dict[str, Any]:
    """The native CPU kernels of the sparse modules, as loaded in this process.

    Loads them if no kernel call has yet (as the first call would). Without them the
    sparse modules run by torch operations and the cost model picks dense products.

    Returns:
        A dict with ``"available"`` (whether the native kernels are loaded),
        ``"variant"`` (``"scalar"``, ``"avx2"``, ``"avx512"``, or ``None`` where none
        loaded), ``"setting"`` (the ``GRAPHWIRE_KERNELS`` value read: ``"auto"``,
        ``"off"`` or a variant) and ``"runnable"`` (the variants this CPU executes; empty
        where nothing can be built).

    Example:
        >>> from graphwire.export import kernel_info
        >>> info = kernel_info()
        >>> info["available"] == (info["variant"] is not None)
        True
    """
    available = _kernels.available()
    try:
        runnable = _native.runnable() if available else ()
    except (OSError, RuntimeError):  # no compiler, or a failed build
        runnable = ()
    return {
        "available": available,
        "variant": _native.loaded_variant(),
        "setting": os.environ.get(_native.ENV_VAR, "").strip().lower() or "auto",
        "runnable": tuple(runnable),
    }
