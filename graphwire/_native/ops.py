"""A tiled sparse-times-dense kernel for CPU inference, built on first use.

``y[g, v, p] = sum over nonzeros (v, u) of a[v, u] * x[g, u, p]`` for a CSR matrix ``a``
and dense ``x`` of shape ``[G, n, P]``. The kernel copies a tile of ``P`` (256 bytes of
every row) into a contiguous buffer that stays in cache while it walks the nonzeros, and
keeps each output row's tile in vector registers. The kernels are plain C in
``graphwire/csrc/`` (``mix.c``, ``conv.c``, ``linear.c`` and the row walks of ``rows.h``),
built on first use by graphwire's one native builder (``graphwire._native``: the system
compiler, one library per ISA variant, chosen at run time or by ``GRAPHWIRE_KERNELS``,
a per-user cache, :mod:`ctypes`); no torch headers, so a build takes about a second.
With ``GRAPHWIRE_KERNELS=off``, no compiler, or a failed build, every function here
falls back to torch operations and :func:`available` reports ``False``, so callers
choose dense products instead.

:func:`csr_mix` is registered as the torch custom operator ``graphwire::csr_mix`` with a
shape-only implementation, so modules using it run under ``torch.inference_mode`` and
export with :func:`torch.export.export`; eager calls on plain tensors skip the
dispatcher and run the operator's body directly (every kernel here does the same).

:func:`shift_mix` (``graphwire::shift_mix``) is the same walk over nonzeros whose columns
are *shifted* rows of a padded, flattened image: a sparse ``k x k`` convolution without
im2col (:class:`~graphwire.export.SparseConv2d`). :func:`sparse_conv2d`
(``graphwire::sparse_conv2d``) is the whole float32 convolution in one call: padding into
per-thread scratch memory, stride phases, the shifted mixes, bias and crop;
:class:`SparseConvCall` calls it directly with arguments prepared per input shape.

:func:`csr_linear` (``graphwire::csr_linear``) is the sparse linear layer on row-major
inputs (blocks of 64 rows transposed in registers, the bias added in the kernel; a
scalar walk per row for at most :data:`FEW_ROWS` rows), and :func:`ell_mix`
(``graphwire::ell_mix``) the one for rows of one length on few input rows.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire._native import load as _load_native

__all__ = [
    "KERNELS",
    "available",
    "conv_geometry",
    "conv_layout",
    "conv_pads",
    "csr",
    "csr_linear",
    "csr_mix",
    "ell_mix",
    "shift_mix",
    "sparse_pays",
    "sparse_conv2d",
    "load",
]


def load() -> ctypes.CDLL | None:
    """The compiled kernel library, building it on the first call; ``None`` if it cannot.

    The library of graphwire's one native builder (``graphwire._native``): the variant
    ``GRAPHWIRE_KERNELS`` chooses, ``None`` with ``GRAPHWIRE_KERNELS=off``.
    """
    return _load_native()


def available() -> bool:
    """Whether the compiled CPU kernel is usable on this machine (builds it if needed)."""
    return load() is not None


def _eager(x: Tensor) -> bool:
    """Whether a kernel call on ``x`` may skip torch's dispatcher (about 5 us a call).

    Eager calls on plain tensors without autograd run the operator's body directly;
    ``torch.export`` and ``torch.compile`` (fake or functional tensors, or dynamo) and
    calls that would record a gradient go through the registered custom operator. (So
    the torch profiler names the kernels only in those calls: torch has no public way
    to ask whether it runs.)
    """
    return (
        type(x) is Tensor
        and not (x.requires_grad and torch.is_grad_enabled())
        and not torch.compiler.is_compiling()
    )


def _torch_csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """The same product with torch operations (GPU, other dtypes, or no kernel)."""
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), rowptr.diff())
    dense = val.new_zeros(rows, x.shape[1]).index_put((row, col), val)  # [rows, n]
    return torch.matmul(dense.to(x.dtype), x)


def _csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """The body of :func:`csr_mix`."""
    lib = load() if x.device.type == "cpu" else None
    kernels = {torch.float32: "gw_csr_mix_f32", torch.float64: "gw_csr_mix_f64"}
    if lib is None or x.dtype not in kernels or val.dtype != x.dtype:
        return _torch_csr_mix(x, rowptr, col, val, rows)
    x, rowptr, col, val = (t.contiguous() for t in (x, rowptr, col, val))
    g, n, p = x.shape
    y = x.new_empty(g, rows, p)
    failed = getattr(lib, kernels[x.dtype])(
        x.data_ptr(),
        y.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        val.data_ptr(),
        g,
        n,
        rows,
        p,
        torch.get_num_threads(),
    )
    if failed:
        return _torch_csr_mix(x, rowptr, col, val, rows)
    return y


_csr_mix_op = torch.library.custom_op("graphwire::csr_mix", _csr_mix, mutates_args=())


def csr_mix(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    """``y[g, v, p] = sum over nonzeros (v, u) of a[v, u] * x[g, u, p]`` for CSR ``a``.

    Args:
        x: Dense ``[G, n, P]``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` column of each nonzero.
        val: ``[nnz]`` values, dtype of ``x``.
        rows: Number of rows of ``a``.

    Returns:
        ``[G, rows, P]``.
    """
    return (_csr_mix if _eager(x) else _csr_mix_op)(x, rowptr, col, val, rows)


@_csr_mix_op.register_fake
def _(x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, rows: int) -> Tensor:
    return x.new_empty(x.shape[0], rows, x.shape[2])


def _torch_shift_mix(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    """:func:`shift_mix` with torch operations: one dense product per distinct shift."""
    off = shift_row * row_width + shift_col
    width = out_h * row_width
    span = -(-width // 64) * 64  # what the kernel reads: its 64-wide tiles
    if off.numel() and (int(off.min()) < 0 or span + int(off.max()) > x.shape[2]):
        raise ValueError(
            f"shift_mix reads past x: {span} positions + the largest shift > {x.shape[2]}"
        )
    row = torch.repeat_interleave(torch.arange(rows, device=rowptr.device), rowptr.diff())
    y = x.new_zeros(x.shape[0], rows, width)
    for shift in torch.unique(off).tolist():
        pick = off == shift
        dense = val.new_zeros(rows, x.shape[1]).index_put(
            (row[pick], col[pick]), val[pick], accumulate=True
        )
        y = y + torch.matmul(dense.to(x.dtype), x[:, :, shift : shift + width])
    y = y.view(x.shape[0], rows, out_h, row_width)[..., :out_w]
    return y.reshape(x.shape[0], rows, out_h * out_w)


def _shift_mix(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    """The body of :func:`shift_mix`."""
    lib = load() if x.device.type == "cpu" else None
    kernels = {torch.float32: "gw_shift_mix_f32", torch.float64: "gw_shift_mix_f64"}
    args = (rows, row_width, out_h, out_w)
    if lib is None or x.dtype not in kernels or val.dtype != x.dtype:
        return _torch_shift_mix(x, rowptr, col, shift_row, shift_col, val, *args)
    x, rowptr, col, shift_row, shift_col, val = (
        t.contiguous() for t in (x, rowptr, col, shift_row, shift_col, val)
    )
    g, n, p_in = x.shape
    span = -(-out_h * row_width // 64) * 64  # the kernel's 64-wide tiles
    y = x.new_empty(g, rows, out_h * out_w)
    failed = getattr(lib, kernels[x.dtype])(
        x.data_ptr(),
        y.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        shift_row.data_ptr(),
        shift_col.data_ptr(),
        val.data_ptr(),
        g,
        n,
        rows,
        p_in,
        span,
        row_width,
        out_h,
        out_w,
        torch.get_num_threads(),
    )
    if failed == 2:
        raise ValueError(f"shift_mix reads past x: {span} positions + the largest shift > {p_in}")
    if failed:
        return _torch_shift_mix(x, rowptr, col, shift_row, shift_col, val, *args)
    return y


_shift_mix_op = torch.library.custom_op("graphwire::shift_mix", _shift_mix, mutates_args=())


def shift_mix(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    """A sparse convolution's product: ``y[g, v, p] = sum of val[e] * x[g, col[e], p + off[e]]``.

    ``x`` holds images flattened with ``row_width`` columns; the shift of nonzero ``e``
    of row ``v`` is ``off[e] = shift_row[e] * row_width + shift_col[e]``. The output
    keeps the positions ``p = h * row_width + w`` with ``h < out_h`` and ``w < out_w``,
    stored as ``h * out_w + w``.

    Args:
        x: Dense ``[G, n, P_in]``, with ``P_in >= 64 * ceil(out_h * row_width / 64) +
            max(off)``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` input row of each nonzero.
        shift_row: int64 ``[nnz]`` shift of each nonzero in image rows.
        shift_col: int64 ``[nnz]`` shift of each nonzero in image columns.
        val: ``[nnz]`` values, dtype of ``x``.
        rows: Output rows.
        row_width: Columns of the flattened images.
        out_h: Output image rows.
        out_w: Output image columns kept (at most ``row_width``).

    Returns:
        ``[G, rows, out_h * out_w]``.

    Raises:
        ValueError: if a shift reads past the end of ``x``'s rows.
    """
    return (_shift_mix if _eager(x) else _shift_mix_op)(
        x, rowptr, col, shift_row, shift_col, val, rows, row_width, out_h, out_w
    )


@_shift_mix_op.register_fake
def _(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    rows: int,
    row_width: int,
    out_h: int,
    out_w: int,
) -> Tensor:
    return x.new_empty(x.shape[0], rows, out_h * out_w)


def _torch_ell_mix(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """:func:`ell_mix` with torch operations (GPU, other dtypes, or no kernel)."""
    gathered = x[:, idx.long()]  # [B, m, L]
    return (gathered * val.to(x.dtype)).sum(-1)


def _ell_mix(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """The body of :func:`ell_mix`."""
    lib = load() if x.device.type == "cpu" else None
    kernels = {torch.float32: "gw_ell_mix_f32", torch.float64: "gw_ell_mix_f64"}
    if lib is None or x.dtype not in kernels or val.dtype != x.dtype or idx.dtype != torch.int32:
        return _torch_ell_mix(x, idx, val)
    x, idx, val = (t.contiguous() for t in (x, idx, val))
    (b, n), (m, width) = x.shape, idx.shape
    y = x.new_empty(b, m)
    getattr(lib, kernels[x.dtype])(
        x.data_ptr(),
        y.data_ptr(),
        idx.data_ptr(),
        val.data_ptr(),
        b,
        n,
        m,
        width,
        torch.get_num_threads(),
    )
    return y


_ell_mix_op = torch.library.custom_op("graphwire::ell_mix", _ell_mix, mutates_args=())


def ell_mix(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """``y[b, v] = sum over j of val[v, j] * x[b, idx[v, j]]``: an ELL matrix times ``x.T``.

    Every row of the matrix holds the same number ``L`` of entries (a constant fan-in;
    shorter rows are padded with zero values), so the layout needs no row pointers and
    the rows split evenly across threads. The kernel walks rows of ``x`` in place
    (row-major, no transpose), which makes it the fast sparse product for inputs of few
    rows; :func:`csr_mix` tiles the rows of ``x`` instead and wins on large batches.

    Args:
        x: Dense ``[B, n]``.
        idx: int32 ``[m, L]`` column of each entry.
        val: ``[m, L]`` values, dtype of ``x``.

    Returns:
        ``[B, m]``.
    """
    return (_ell_mix if _eager(x) else _ell_mix_op)(x, idx, val)


@_ell_mix_op.register_fake
def _(x: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    return x.new_empty(x.shape[0], idx.shape[0])


#: Inputs of at most this many rows run :func:`csr_linear`'s scalar walk per row, others
#: its blocks of 64 rows.
FEW_ROWS = 4


def _torch_csr_linear(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    """:func:`csr_linear` by the CSR kernel on transposed copies, or torch operations.

    Row-major, as the kernel's output (and the operator's fake implementation) is.
    """
    y = csr_mix(x.t().unsqueeze(0), rowptr, col, val, rows)[0].t().contiguous()
    return y if bias is None else y + bias


def _csr_linear(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    """The body of :func:`csr_linear`."""
    lib = load() if x.device.type == "cpu" else None
    usable = x.dtype == val.dtype == torch.float32 and (bias is None or bias.dtype == x.dtype)
    if lib is None or not usable:
        return _torch_csr_linear(x, rowptr, col, val, bias, rows)
    x, rowptr, col, val = (t.contiguous() for t in (x, rowptr, col, val))
    bias = None if bias is None else bias.contiguous()
    r, n = x.shape
    y = x.new_empty(r, rows)
    failed = lib.gw_csr_linear_f32(
        x.data_ptr(),
        y.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        val.data_ptr(),
        None if bias is None else bias.data_ptr(),
        r,
        n,
        rows,
        torch.get_num_threads(),
        FEW_ROWS,
    )
    if failed:
        return _torch_csr_linear(x, rowptr, col, val, bias, rows)
    return y


_csr_linear_op = torch.library.custom_op("graphwire::csr_linear", _csr_linear, mutates_args=())


def csr_linear(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    """A sparse linear layer on row-major inputs: ``y = x @ a.T + bias`` for CSR ``a``.

    ``y[r, v] = bias[v] + sum over nonzeros (v, u) of a[v, u] * x[r, u]``. The kernel
    transposes blocks of 64 rows of ``x`` into a per-thread buffer in registers (8 x 8
    transposes), walks the nonzeros once per block as :func:`csr_mix` does, and writes
    the block's outputs back transposed with the bias added, so neither ``x`` nor ``y``
    is copied transposed in memory. float32 on a CPU; other dtypes and devices run
    :func:`csr_mix` on transposed copies.

    Args:
        x: Dense ``[R, n]``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` column of each nonzero.
        val: ``[nnz]`` values, dtype of ``x``.
        bias: ``[rows]`` or ``None``.
        rows: Number of rows of ``a`` (output features).

    Returns:
        ``[R, rows]``.
    """
    return (_csr_linear if _eager(x) else _csr_linear_op)(x, rowptr, col, val, bias, rows)


@_csr_linear_op.register_fake
def _(
    x: Tensor, rowptr: Tensor, col: Tensor, val: Tensor, bias: Tensor | None, rows: int
) -> Tensor:
    return x.new_empty(x.shape[0], rows)


def _torch_sparse_conv2d(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """:func:`sparse_conv2d` by torch's padding and :func:`shift_mix` (other dtypes, GPU)."""
    top, left, sh, sw, rows_q, cols_q, out_h, out_w = geometry
    batch, channels, height, width = x.shape
    pads = (left, cols_q * sw - width - left, top, rows_q * sh - height - top)
    x = F.pad(x, pads)  # [B, C, rows_q * sh, cols_q * sw]
    if (sh, sw) != (1, 1):  # the phase images: [B, C, sh, sw, rows_q, cols_q]
        x = x.view(batch, channels, rows_q, sh, cols_q, sw).permute(0, 1, 3, 5, 2, 4)
    x = x.reshape(batch, channels * sh * sw, rows_q * cols_q)
    y = shift_mix(x, rowptr, col, shift_row, shift_col, val, rows, cols_q, out_h, out_w)
    y = y.view(batch, rows, out_h, out_w)
    return epilogue(y if bias is None else y + bias.view(1, -1, 1, 1), residual, relu)


def epilogue(y: Tensor, residual: Tensor | None, relu: bool) -> Tensor:
    """``relu(y + residual)`` by torch, each part where asked, for a fresh output ``y``.

    In place on ``y`` where the residual has its shape and dtype (no new tensor; autograd
    allows it, as ``y`` is no leaf); else as ``+`` broadcasts and promotes.
    """
    if residual is not None:
        same = residual.shape == y.shape and residual.dtype == y.dtype
        y = y.add_(residual) if same else y + residual
    return y.relu_() if relu else y


def _conv_sizes(
    shape: torch.Size, rows: int, geometry: list[int]
) -> tuple[tuple[int, ...], ctypes.Array]:
    """The output shape and the integer arguments of ``gw_sparse_conv_f32`` (an array)."""
    batch, channels, height, width = shape
    top, left, sh, sw, rows_q, cols_q, out_h, out_w = geometry
    sizes = (batch, channels, height, width, top, left, sh, sw, rows_q, cols_q)
    return (batch, rows, out_h, out_w), (ctypes.c_int64 * 13)(*sizes, rows, out_h, out_w)


def _sparse_conv2d(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """The body of :func:`sparse_conv2d`."""
    lib = load() if x.device.type == "cpu" else None
    usable = x.dtype == val.dtype == torch.float32 and (bias is None or bias.dtype == x.dtype)
    args = (x, rowptr, col, shift_row, shift_col, val, bias, rows, geometry)
    if lib is None or not usable:
        return _torch_sparse_conv2d(*args, residual, relu)
    x = x.contiguous()
    out_shape, sizes = _conv_sizes(x.shape, rows, geometry)
    fused = residual is None or _fusable(residual, out_shape)
    y = x.new_empty(out_shape)
    buffers = (rowptr, col, shift_row, shift_col, val, bias, residual if fused else None)
    ptrs = (None if b is None else b.data_ptr() for b in buffers)
    failed = lib.gw_sparse_conv_f32(
        x.data_ptr(), y.data_ptr(), *ptrs, sizes, int(relu and fused), torch.get_num_threads()
    )
    if failed == 2:
        raise ValueError("sparse_conv2d reads past its padded input: the geometry is wrong")
    if failed:
        return _torch_sparse_conv2d(*args, residual, relu)
    return y if fused else epilogue(y, residual, relu)


def _fusable(residual: Tensor, shape: tuple[int, ...]) -> bool:
    """Whether the kernel can add ``residual`` as it stores: float32, CPU, ``shape``, dense."""
    return (
        residual.dtype == torch.float32
        and residual.device.type == "cpu"
        and residual.shape == shape
        and residual.is_contiguous()
        and not residual.requires_grad
    )


_sparse_conv2d_op = torch.library.custom_op(
    "graphwire::sparse_conv2d", _sparse_conv2d, mutates_args=()
)


def sparse_conv2d(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """A sparse ``k x k`` convolution in one call: padding, phases, mixes, bias, crop, epilogue.

    ``x`` is padded with zeros by ``top`` rows and ``left`` columns (and to the phase
    grid), split into its ``sh x sw`` stride phases of ``rows_q x cols_q`` each, and
    mixed by :func:`shift_mix` (nonzero ``e`` reads phase channel ``col[e]`` shifted by
    ``shift_row[e] * cols_q + shift_col[e]``); the bias is added and only ``out_h x
    out_w`` outputs are stored. The float32 CPU kernel builds the padded phases in
    per-thread scratch memory (no padded copy is allocated) and adds the bias as it
    stores; other dtypes and devices run torch's padding and :func:`shift_mix`. A
    ``residual`` is added after the bias and ``relu`` applied last, as the kernel stores
    where it can (a float32 residual of the output's shape, contiguous) and by torch
    otherwise (broadcasting as ``+`` does): ``relu(conv(x) + bias + residual)``, in
    torch's order of additions, so the result equals the separate operations.

    Args:
        x: ``[B, C, H, W]``, padded already by the layer's mode where it is not zeros.
        rowptr: int64 ``[rows + 1]`` CSR row pointers over output channels.
        col: int64 ``[nnz]`` phase channel ``(c * sh + a) * sw + b`` of each nonzero.
        shift_row: int64 ``[nnz]`` shift in phase rows.
        shift_col: int64 ``[nnz]`` shift in phase columns.
        val: ``[nnz]`` values, dtype of ``x``.
        bias: ``[rows]`` or ``None``.
        rows: Output channels.
        geometry: ``[top, left, sh, sw, rows_q, cols_q, out_h, out_w]``.
        residual: Added to the output (after the bias), or ``None``.
        relu: Apply the ReLU last.

    Returns:
        ``[B, rows, out_h, out_w]`` (broadcast with ``residual``'s shape).

    Raises:
        ValueError: if a shift reads past the padded phase images.
    """
    op = _sparse_conv2d if _eager(x) else _sparse_conv2d_op
    return op(x, rowptr, col, shift_row, shift_col, val, bias, rows, geometry, residual, relu)


@_sparse_conv2d_op.register_fake
def _(
    x: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    val: Tensor,
    bias: Tensor | None,
    rows: int,
    geometry: list[int],
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    return x.new_empty(
        torch.broadcast_shapes(
            (x.shape[0], rows, geometry[6], geometry[7]), () if residual is None else residual.shape
        )
    )


class SparseConvCall:
    """One layer's direct calls of the float32 CPU kernel of :func:`sparse_conv2d`.

    Eager float32 calls on contiguous CPU inputs skip the operator's checks and argument
    building (about 6 us a call, a fifth of a small layer's time): the kernel's integer
    arguments are prepared once per input shape and buffer addresses. Everything else
    (other dtypes and devices, tracing, autograd, a kernel that refused its arguments)
    returns ``None`` and the caller runs :func:`sparse_conv2d`.
    """

    _MAX_PLANS = 16  # input shapes kept per layer

    def __init__(self) -> None:
        self._plans: dict[tuple, tuple] = {}

    def __getstate__(self) -> dict:
        """Nothing to copy: a copy prepares its own plans on its first call.

        The plans hold ctypes functions and arrays, which do not pickle or deep-copy, and
        name buffer addresses a copy does not share.
        """
        return {}

    def __setstate__(self, state: dict) -> None:
        self._plans = {}

    def __call__(
        self,
        x: Tensor,
        buffers: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None],
        rows: int,
        geometry: list[int],
        residual: Tensor | None = None,
        relu: bool = False,
    ) -> Tensor | None:
        """``sparse_conv2d(x, *buffers, rows, geometry, residual, relu)``, or ``None``.

        ``buffers`` are ``(rowptr, col, shift_row, shift_col, val, bias)``. ``None`` where
        the direct call does not apply (the caller runs :func:`sparse_conv2d`).
        """
        val, bias = buffers[4], buffers[5]
        if not (
            x.dtype == val.dtype == torch.float32
            and x.is_cpu  # an attribute: x.device builds an object (0.3 us)
            and (bias is None or bias.dtype == torch.float32)
            and x.is_contiguous()
            and _eager(x)
        ):
            return None
        ptrs = tuple([None if b is None else b.data_ptr() for b in buffers])  # no generator
        key = (x.shape, ptrs)
        plan = self._plans.get(key)
        if plan is None:
            lib = load()
            if lib is None:
                return None
            plan = (lib.gw_sparse_conv_f32, *_conv_sizes(x.shape, rows, geometry))
            if len(self._plans) >= self._MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        kernel, out_shape, sizes = plan
        if residual is not None and not _fusable(residual, out_shape):
            return None
        res = None if residual is None else residual.data_ptr()
        y = torch.empty(out_shape, dtype=torch.float32)  # not the default dtype: the kernel's
        threads = torch.get_num_threads()
        failed = kernel(x.data_ptr(), y.data_ptr(), *ptrs, res, sizes, int(relu), threads)
        return None if failed else y


#: How a module with sparse kernels computes: the cost model's choice (``"auto"``), or one
#: path forced. The ``kernel`` of :func:`graphwire.freeze` (the frozen blocks and layers)
#: and of the wired layers' training step.
KERNELS = ("auto", "dense", "sparse")

#: The cost model's switch points for inference, by kind of product: on a CPU with the
#: compiled kernel, a product whose fraction of nonzero entries is at most this runs by
#: the sparse kernel, else dense. ``"block"``: a frozen graph's block (from ``python -m
#: benchmarks speed``: the kernel beat a dense product up to about 30% density on a
#: 2-core AVX2 CPU); ``"linear"``: ``nn.Linear``; ``"pointwise"``: a 1 x 1 convolution
#: without padding; ``"conv"``: any other ``Conv1d`` / ``Conv2d`` (linear layers timed on
#: an idle AVX-512 Xeon, convolutions on a shared AVX2 machine; see
#: ``docs/concepts/freeze.md``). On GPUs dense products (cuBLAS, cuDNN) are always chosen.
_MAX_DENSITY: Mapping[str, float] = MappingProxyType(
    {"block": 0.25, "linear": 0.2, "pointwise": 0.25, "conv": 0.15}
)

#: The switch points of a wired layer's training step by sparse products (forward, input
#: gradient, sampled weight gradient) against the masked dense step, by kind: tiers of
#: ``(density, work)``, the step runs sparse where the fraction of selected weights is at
#: most ``density`` and the dense product has at least ``work`` multiply-adds (rows times
#: entries; below it a layer's fixed costs per call, its layout from the mask and the
#: autograd glue, eat the gain). A step that needs the dense weight gradient (DNW, RigL's
#: updates) has only two sparse products and uses the first tier only. From ``python -m
#: benchmarks sparse-training`` on a 2-core AMD EPYC: sparse won at 10% and broke even
#: or lost at 20% (convolutions; DNW's steps); the MLP's 784 x 300 layer at batch 128
#: (30 M) won at 20% with RigL and SET, and its 300 x 100 layer (3.8 M) at 10%.
#: Convolutions below 10 M were not measured.
_TRAIN_SWITCHES: Mapping[str, tuple[tuple[float, int], ...]] = MappingProxyType(
    {
        "train_linear": ((0.15, 3_000_000), (0.25, 25_000_000)),
        "train_conv": ((0.15, 10_000_000),),
    }
)


def sparse_pays(
    kind: str,
    nnz: int,
    entries: int,
    device: torch.device,
    dtype: torch.dtype,
    rows: int | None = None,
    dense_weight_grad: bool = False,
) -> bool:
    """The cost model: run a product of ``entries`` with ``nnz`` nonzeros by the sparse kernel?

    ``True`` on a CPU with the native kernels loaded, where the fraction of nonzeros is
    at most the switch point of ``kind`` (``"block"``, ``"linear"``, ``"pointwise"``,
    ``"conv"``; float32 or float64). For the training kinds (``"train_linear"``,
    ``"train_conv"``; float32 only) the switch depends also on the dense product's size,
    ``rows`` input rows (a convolution: output positions) times ``entries``, and on
    whether the step needs the ``dense_weight_grad`` (see :data:`_TRAIN_SWITCHES`).

    Example:
        >>> import torch
        >>> from graphwire._native.ops import available, sparse_pays
        >>> cpu = torch.device("cpu")
        >>> big = sparse_pays("train_linear", 23_520, 235_200, cpu, torch.float32, rows=128)
        >>> small = sparse_pays("train_linear", 23_520, 235_200, cpu, torch.float32, rows=4)
        >>> (big, small) == (available(), False)
        True
    """
    if device.type != "cpu" or not available():
        return False
    if kind in _TRAIN_SWITCHES:
        if dtype != torch.float32:
            return False
        tiers = _TRAIN_SWITCHES[kind][: 1 if dense_weight_grad else None]
        work = (rows or 0) * entries
        return any(nnz <= d * max(entries, 1) and work >= w for d, w in tiers)
    return dtype in (torch.float32, torch.float64) and nnz <= _MAX_DENSITY[kind] * max(entries, 1)


def csr(rows: Tensor, cols: Tensor, values: Tensor, num_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """CSR ``(rowptr, col, val)`` of nonzeros already sorted by row.

    Args:
        rows: int64 ``[nnz]`` row of each nonzero, ascending.
        cols: int64 ``[nnz]`` column of each nonzero.
        values: ``[nnz]`` values.
        num_rows: Rows of the matrix.

    Example:
        >>> import torch
        >>> from graphwire._native.ops import csr
        >>> rowptr, col, val = csr(torch.tensor([0, 0, 2]), torch.tensor([1, 3, 0]),
        ...                        torch.tensor([1.0, 2.0, 3.0]), 3)
        >>> rowptr.tolist(), col.tolist()
        ([0, 2, 2, 3], [1, 3, 0])
    """
    counts = torch.bincount(rows, minlength=num_rows)
    rowptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return rowptr, cols.contiguous(), values.contiguous()


def conv_layout(
    in_channel: Tensor,
    tap_row: Tensor,
    tap_col: Tensor,
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`sparse_conv2d`'s ``(col, shift_row, shift_col)`` of nonzero kernel weights.

    Nonzero ``e`` is the weight from input channel ``in_channel[e]`` (global, groups
    resolved) at kernel tap ``(i, j) = (tap_row[e], tap_col[e])``; it reads the stride
    phase ``(c * sh + (i * dh) % sh) * sw + (j * dw) % sw`` of the padded input, shifted
    by ``((i * dh) // sh, (j * dw) // sw)`` phase rows and columns.
    The one place the sparse convolutions (frozen and training) build it.

    Example:
        >>> import torch
        >>> from graphwire._native.ops import conv_layout
        >>> col, sr, sc = conv_layout(torch.tensor([1]), torch.tensor([2]), torch.tensor([1]),
        ...                           (2, 2), (1, 1))
        >>> col.tolist(), sr.tolist(), sc.tolist()
        ([5], [1], [0])
    """
    (sh, sw), (dh, dw) = stride, dilation
    col = (in_channel * sh + (tap_row * dh) % sh) * sw + (tap_col * dw) % sw
    return col, (tap_row * dh) // sh, (tap_col * dw) // sw


def conv_geometry(
    size: tuple[int, int],
    pads: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    stride: tuple[int, int],
    max_shift: tuple[int, int],
    out_size: tuple[int, int] | None = None,
) -> list[int]:
    """:func:`sparse_conv2d`'s ``geometry`` for an input of ``size``.

    ``[top, left, sh, sw, rows_q, cols_q, out_h, out_w]``: the input is padded by
    ``pads = (left, right, top, bottom)`` zeros, split into the stride's phase images of
    ``rows_q x cols_q``, and output position ``p = h * cols_q + w`` reads phase position
    ``p + shift_row * cols_q + shift_col``, so zero rows are added below for the largest
    shift (``max_shift``) of the last of the kernel's 64-wide tiles. ``out_size`` asks for
    that output size instead of the convolution's own (a transposed convolution's input
    gradient); the padding below and right then grows to reach it.

    Example:
        >>> from graphwire._native.ops import conv_geometry
        >>> conv_geometry((8, 8), (1, 1, 1, 1), (3, 3), (1, 1), (1, 1), (2, 2))
        [1, 1, 1, 1, 15, 10, 8, 8]
    """
    (kh, kw), (dh, dw), (sh, sw) = kernel_size, dilation, stride
    left, right, top, bottom = pads
    height, width = size[0] + top + bottom, size[1] + left + right  # padded
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    if out_size is not None:
        out_h, out_w = out_size
        height = max(height, (out_h - 1) * sh + dh * (kh - 1) + 1)
        width = max(width, (out_w - 1) * sw + dw * (kw - 1) + 1)
    rows_q, cols_q = -(-height // sh), -(-width // sw)
    span = -(-(out_h * cols_q) // 64) * 64  # the kernel's 64-wide tiles
    need = span + max_shift[0] * cols_q + max_shift[1]  # positions read
    rows_q = max(rows_q, -(-need // cols_q))  # zero rows past the end
    return [top, left, sh, sw, rows_q, cols_q, out_h, out_w]


def conv_pads(conv: nn.Module) -> tuple[int, ...]:
    """``F.pad`` amounts (last dimension first) of ``conv``'s padding, ``'same'`` resolved.

    Example:
        >>> from torch import nn
        >>> from graphwire._native.ops import conv_pads
        >>> conv_pads(nn.Conv2d(1, 1, (3, 4), padding="same"))
        (1, 2, 1, 1)
    """
    dims = len(conv.kernel_size)
    pads: list[int] = []
    for i in reversed(range(dims)):
        if conv.padding == "valid":
            lo = hi = 0
        elif conv.padding == "same":
            total = conv.dilation[i] * (conv.kernel_size[i] - 1)
            lo, hi = total // 2, total - total // 2
        else:
            lo = hi = conv.padding[i]
        pads += [lo, hi]
    return tuple(pads)
