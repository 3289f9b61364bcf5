"""What the native CPU kernels behind the sparse modules are, on this machine."""

from __future__ import annotations

from typing import Any

from graphwire.lowering import _kernel

__all__ = ["kernel_info"]


def kernel_info() -> dict[str, Any]:
    """The native CPU kernels of the sparse modules, as loaded in this process.

    Returns:
        ``{"available": bool}``: whether the compiled kernels are usable (else the sparse
        modules run by torch operations, and the cost model picks dense products).

    Example:
        >>> from graphwire.export import kernel_info
        >>> isinstance(kernel_info()["available"], bool)
        True
    """
    return {"available": _kernel.available()}
