"""The inference room's building blocks: the block module and the sparse product.

- :class:`Mix`: a frozen graph's block ``z -> A z``, as one dense product or by the sparse
  kernels;
- :func:`sparse_mix`: the sparse product of a CSR matrix with node features, through the
  kernel that fits the features (``csr_linear`` or ``ell_mix`` for vectors, ``csr_mix``
  for images and signals).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphwire._native import ops as _kernel
from graphwire._native.ops import csr

__all__ = [
    "ELL_MAX_ROWS",
    "Mix",
    "dense_mix",
    "ell_layout",
    "register_ell",
    "sparse_mix",
]

#: Vector features of at most this many rows run a block kept in ELL form (every row
#: the same length: a constant fan-in) by ``graphwire::ell_mix``, row-major and without
#: transposes, instead of the CSR kernel, which tiles 64 rows at a time. From
#: ``python -m benchmarks fan-in`` (2-core CPU): ELL beat CSR 1.3-7x at 1 and 4 rows.
ELL_MAX_ROWS = 8

#: A block is kept in ELL form too where padding its rows to the longest adds at most
#: this fraction of entries; a constant fan-in adds none.
_ELL_MAX_PADDING = 0.25


def ell_layout(rowptr: Tensor, col: Tensor, val: Tensor) -> tuple[Tensor, Tensor] | None:
    """A CSR matrix in ELL form: int32 ``[rows, L]`` columns and ``[rows, L]`` values.

    ``L`` is the longest row; shorter rows are padded with zero values at column 0.
    ``None`` where that padding would add more than a quarter of the entries (rows of
    very different lengths) or the columns do not fit in int32. A constant fan-in gives
    rows of one length and no padding.
    """
    rows = rowptr.numel() - 1
    counts = rowptr.diff()
    width = int(counts.max()) if rows else 0
    if rows * width > (1 + _ELL_MAX_PADDING) * max(col.numel(), 1) or (
        col.numel() and int(col.max()) >= 2**31
    ):
        return None
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), counts)
    slot = torch.arange(col.numel(), device=col.device) - rowptr[row]  # place in its row
    idx = torch.zeros(rows, width, dtype=torch.int32, device=col.device)
    values = val.new_zeros(rows, width)
    idx[row, slot] = col.to(torch.int32)
    values[row, slot] = val
    return idx, values


def register_ell(module: nn.Module, rowptr: Tensor, col: Tensor, val: Tensor) -> None:
    """Keep a CSR matrix's ELL form (:func:`ell_layout`) on ``module``, where it has one.

    Sets ``module.ell`` (whether it has one) and the buffers ``ell_idx`` and ``ell_val``
    (empty where it has none: ``torch.export`` mis-names the buffers that follow two
    ``None`` ones).
    """
    ell = ell_layout(rowptr, col, val)
    module.ell = ell is not None
    empty = torch.zeros(0, 0, dtype=torch.int32, device=col.device), val.new_zeros(0, 0)
    module.register_buffer("ell_idx", ell[0] if ell is not None else empty[0])
    module.register_buffer("ell_val", ell[1] if ell is not None else empty[1])


def dense_mix(z: Tensor, a: Tensor) -> Tensor:
    """``out[:, v] = sum over u of a[v, u] * z[:, u]`` for ``[B, n, *F]`` features ``z``.

    One batched product over the default memory layout (no channels-last copy): the
    form of inference.
    """
    if z.dim() == 2:
        return z @ a.t()
    out = torch.matmul(a, z.flatten(2))  # [B, m, P]
    return out.view(z.shape[0], -1, *z.shape[2:])


def sparse_mix(
    z: Tensor,
    rowptr: Tensor,
    col: Tensor,
    val: Tensor,
    rows: int,
    ell: tuple[Tensor, Tensor] | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """:func:`dense_mix` with a CSR matrix, by the native kernels.

    Vector features run by ``graphwire::csr_linear`` (row-major, the bias added in the
    kernel), or by ``graphwire::ell_mix`` where ``ell`` is given and there are at most
    :data:`ELL_MAX_ROWS` rows; other features by ``graphwire::csr_mix``.

    Args:
        z: Node features ``[B, n, *F]``.
        rowptr: int64 ``[rows + 1]`` row pointers.
        col: int64 ``[nnz]`` columns.
        val: ``[nnz]`` values.
        rows: Rows of the matrix.
        ell: The same matrix in ELL form (:func:`ell_layout`), or ``None``.
        bias: ``[rows]`` added to every output row (a layer's bias), or ``None``.

    Returns:
        ``[B, rows, *F]``.
    """
    if z.dim() == 2:  # vectors
        if ell is None or z.shape[0] > ELL_MAX_ROWS:  # row-major blocks, bias in the kernel
            return _kernel.csr_linear(z, rowptr, col, val, bias, rows)
        out = _kernel.ell_mix(z, *ell)  # few rows: row-major ELL
    else:
        out = _kernel.csr_mix(z.flatten(2), rowptr, col, val, rows)
        out = out.view(z.shape[0], rows, *z.shape[2:])  # [B, rows, *F]
    if bias is not None:
        out = out + bias.view(rows, *(1,) * (z.dim() - 2))
    return out


class Mix(nn.Module):
    """One block of a frozen graph: ``out[:, v] = sum over u of A[v, u] * z[:, u]``.

    Kept dense (a ``weight`` buffer, one batched product) or sparse (CSR buffers
    ``rowptr``, ``col``, ``val``, run by the native kernels; where the rows are of
    nearly one length, as under a constant fan-in, also in ELL form, which vector
    features of at most :data:`ELL_MAX_ROWS` rows use).

    Args:
        weight: The dense ``[m, n]`` block.
        sparse: Keep it in CSR form (its zeros dropped).

    Example:
        >>> import torch
        >>> from graphwire.export._blocks import Mix
        >>> a = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
        >>> z = torch.randn(3, 2)
        >>> torch.equal(Mix(a, sparse=True)(z), Mix(a, sparse=False)(z))
        True
    """

    def __init__(self, weight: Tensor, sparse: bool) -> None:
        super().__init__()
        self.rows, self.cols = weight.shape
        self.sparse = sparse
        if sparse:
            rows, cols = (weight != 0).nonzero().t()  # row-major order
            rowptr, col, val = csr(rows, cols, weight[rows, cols], self.rows)
            self.register_buffer("rowptr", rowptr)
            self.register_buffer("col", col)
            self.register_buffer("val", val)
            register_ell(self, rowptr, col, val)
        else:
            self.register_buffer("weight", weight.clone())

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[B, n, *F]`` -> ``[B, m, *F]``."""
        if not self.sparse:
            return dense_mix(z, self.weight)
        ell = (self.ell_idx, self.ell_val) if self.ell else None
        return sparse_mix(z, self.rowptr, self.col, self.val, self.rows, ell)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        if not self.sparse:
            return f"{self.cols} -> {self.rows}, dense"
        ell = ", ell" if self.ell else ""
        return f"{self.cols} -> {self.rows}, nnz={self.val.numel()}{ell}"
