"""Sparse training's kernels: layouts from a mask and gradients at the selected weights.

A sparse training step needs the weight gradient only where a weight is selected: a
*sampled* dense-dense product (SDDMM), a dot product per selected weight instead of the
whole dense gradient. :func:`linear_weight_sampled` is the one of a linear layer
(``graphwire::linear_weight_sampled``; :func:`sddmm`, ``graphwire::sddmm``, on
transposed operands for other dtypes), :func:`conv2d_weight_sampled` the one of a
convolution (``graphwire::conv2d_weight_sampled``), on the layout of
:func:`~graphwire._native.ops.sparse_conv2d`. They are ``torch.library`` custom operators
with shape-only fake implementations and torch fallbacks (other dtypes, devices, or no
compiled kernel), and compute each entry in one fixed order for a given thread count.

The layouts are built from the mask at every step, natively: :func:`count_selected`,
:func:`mask_pattern` (a linear weight's CSR pattern by row and by column) and
:func:`conv_mask_pattern` (a convolution's forward and input-gradient layouts).
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor

from graphwire._native.ops import conv_layout, csr, load

__all__ = [
    "conv2d_weight_sampled",
    "conv_mask_pattern",
    "count_selected",
    "linear_weight_sampled",
    "mask_pattern",
    "sddmm",
]


def count_selected(mask: Tensor) -> int:
    """The set entries of a boolean ``mask``: one native pass over its bytes.

    (``torch.count_nonzero`` of a boolean CPU tensor costs about 40 us for 235,000
    entries, the first layer of the 784-300-100-10 MLP: longer than its sparse product.)

    Example:
        >>> import torch
        >>> from graphwire._native.grads import count_selected
        >>> count_selected(torch.arange(100) % 3 == 0)
        34
    """
    lib = load() if mask.device.type == "cpu" else None
    if lib is None or mask.dtype != torch.bool or not mask.is_contiguous():
        return int(mask.count_nonzero())
    return int(lib.gw_count_set(mask.data_ptr(), mask.numel()))


def _torch_mask_pattern(mask: Tensor) -> tuple[Tensor, ...]:
    rows, cols = mask.shape
    flat = mask.reshape(-1).nonzero().squeeze(1)  # row-major: by row
    counts = torch.bincount(flat.div(cols, rounding_mode="floor"), minlength=rows)
    rowptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    flat_t = mask.t().reshape(-1).nonzero().squeeze(1)  # by column, then row
    col_t = flat_t.remainder(rows)
    counts_t = torch.bincount(flat_t.div(rows, rounding_mode="floor"), minlength=cols)
    rowptr_t = torch.cat([counts_t.new_zeros(1), counts_t.cumsum(0)])
    return (
        rowptr,
        flat.remainder(cols),
        flat,
        rowptr_t,
        col_t,
        col_t * cols + flat_t.div(rows, rounding_mode="floor"),
    )


def mask_pattern(mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The CSR pattern of a boolean ``[rows, cols]`` mask, by row and by column.

    ``(rowptr, col, flat, rowptr_t, col_t, flat_t)``: ``rowptr`` ``[rows + 1]`` and
    ``col`` the CSR pattern, ``flat`` the row-major index ``row * cols + col`` of each
    entry; ``rowptr_t`` ``[cols + 1]``, ``col_t`` (the row) and ``flat_t`` the same
    entries by column (rows ascending within a column). The native kernel walks the
    mask's bytes (64 at a time with AVX2) in blocks of rows per thread; torch's
    ``nonzero`` without it.

    Example:
        >>> import torch
        >>> from graphwire._native.grads import mask_pattern
        >>> p = mask_pattern(torch.tensor([[True, False, True], [False, True, False]]))
        >>> [t.tolist() for t in p]
        [[0, 2, 3], [0, 2, 1], [0, 2, 4], [0, 1, 2, 3], [0, 1, 0], [0, 4, 2]]
    """
    lib = load() if mask.device.type == "cpu" else None
    if lib is None or mask.dtype != torch.bool:
        return _torch_mask_pattern(mask)
    mask = mask.contiguous()
    rows, cols = mask.shape
    nnz = count_selected(mask)
    new = torch.empty  # six int64 arrays, filled by the kernel
    rowptr, rowptr_t = new(rows + 1, dtype=torch.int64), new(cols + 1, dtype=torch.int64)
    col, flat, col_t, flat_t = (new(nnz, dtype=torch.int64) for _ in range(4))
    found = lib.gw_mask_pattern(
        mask.data_ptr(),
        rows,
        cols,
        nnz,
        *(t.data_ptr() for t in (rowptr, col, flat, rowptr_t, col_t, flat_t)),
        torch.get_num_threads(),
    )
    if found != nnz:
        return _torch_mask_pattern(mask)
    return rowptr, col, flat, rowptr_t, col_t, flat_t


def _torch_conv_mask_pattern(
    mask: Tensor, groups: int, stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[Tensor, ...]:
    out_ch, per_group, kh, kw = mask.shape
    flat = mask.reshape(-1).nonzero().squeeze(1)  # row-major: by output channel
    o = flat.div(per_group * kh * kw, rounding_mode="floor")
    ci = flat.div(kh * kw, rounding_mode="floor").remainder(per_group)
    i, j = flat.div(kw, rounding_mode="floor").remainder(kh), flat.remainder(kw)
    c = o.div(out_ch // groups, rounding_mode="floor") * per_group + ci  # global channel
    col, shift_row, shift_col = conv_layout(c, i, j, stride, dilation)
    rowptr, col, _ = csr(o, col, col, out_ch)
    order = torch.argsort(c, stable=True)  # by input channel, then in forward order
    o, c, i, j = o[order], c[order], i[order], j[order]
    col_t, shift_row_t, shift_col_t = conv_layout(o, kh - 1 - i, kw - 1 - j, (1, 1), dilation)
    rowptr_t, col_t, _ = csr(c, col_t, col_t, per_group * groups)
    return (
        rowptr,
        col,
        shift_row,
        shift_col,
        flat,
        rowptr_t,
        col_t,
        shift_row_t,
        shift_col_t,
        flat[order],
    )


def conv_mask_pattern(
    mask: Tensor, groups: int, stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[Tensor, ...]:
    """Both :func:`~graphwire._native.ops.sparse_conv2d` layouts of a convolution's mask.

    For a boolean ``[C_out, C_in / groups, kh, kw]`` mask: ``(rowptr, col, shift_row,
    shift_col, flat)``, the forward convolution's layout by output channel (as
    :func:`~graphwire._native.ops.conv_layout` builds it) with ``flat`` the index of each
    weight in the flattened kernel; then ``(rowptr_t, col_t, shift_row_t, shift_col_t,
    flat_t)``, the input gradient's: a stride-1 convolution of the output gradient by the
    flipped kernel, by input channel (within a channel in forward order). One pass of the
    native kernel over the mask's bytes, or torch operations without it.

    Example:
        >>> import torch
        >>> from graphwire._native.grads import conv_mask_pattern
        >>> mask = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
        >>> mask[0, 0, 0, 1] = mask[1, 0, 2, 2] = True
        >>> p = conv_mask_pattern(mask, 1, (1, 1), (1, 1))
        >>> p[0].tolist(), p[2].tolist(), p[3].tolist(), p[7].tolist(), p[8].tolist()
        ([0, 1, 2], [0, 2], [1, 2], [2, 0], [1, 0])
    """
    lib = load() if mask.device.type == "cpu" else None
    if lib is None or mask.dtype != torch.bool:
        return _torch_conv_mask_pattern(mask, groups, stride, dilation)
    mask = mask.contiguous()
    out_ch, per_group, kh, kw = mask.shape
    nnz = count_selected(mask)
    new = torch.empty
    rowptr, rowptr_t = (
        new(out_ch + 1, dtype=torch.int64),
        new(per_group * groups + 1, dtype=torch.int64),
    )
    arrays = [new(nnz, dtype=torch.int64) for _ in range(8)]
    sizes = (ctypes.c_int64 * 9)(out_ch, per_group, kh, kw, groups, *stride, *dilation)
    out = (rowptr, *arrays[:4], rowptr_t, *arrays[4:])
    found = lib.gw_conv_pattern(mask.data_ptr(), sizes, nnz, *(t.data_ptr() for t in out))
    if found != nnz:
        return _torch_conv_mask_pattern(mask, groups, stride, dilation)
    return out


def _rows_of(rowptr: Tensor) -> Tensor:
    """The row of every nonzero of a CSR pattern."""
    rows = torch.arange(rowptr.numel() - 1, device=rowptr.device)
    return torch.repeat_interleave(rows, rowptr.diff())


def _torch_sddmm(a: Tensor, b: Tensor, rowptr: Tensor, col: Tensor) -> Tensor:
    """:func:`sddmm` by torch: the dense product, read at the pattern."""
    return (a @ b.t())[_rows_of(rowptr), col]


def _sddmm(a: Tensor, b: Tensor, rowptr: Tensor, col: Tensor) -> Tensor:
    """The body of :func:`sddmm`."""
    lib = load() if a.device.type == "cpu" else None
    if lib is None or not a.dtype == b.dtype == torch.float64:  # float32: linear_weight_sampled
        return _torch_sddmm(a, b, rowptr, col)
    a, b, rowptr, col = (t.contiguous() for t in (a, b, rowptr, col))
    out = a.new_empty(col.numel())
    rows, length = a.shape
    lib.gw_sddmm_f64(
        a.data_ptr(),
        b.data_ptr(),
        rowptr.data_ptr(),
        col.data_ptr(),
        out.data_ptr(),
        rows,
        length,
        torch.get_num_threads(),
    )
    return out


_sddmm_op = torch.library.custom_op("graphwire::sddmm", _sddmm, mutates_args=())


def sddmm(a: Tensor, b: Tensor, rowptr: Tensor, col: Tensor) -> Tensor:
    """``out[e] = <a[v], b[col[e]]>`` for every nonzero ``e`` of row ``v`` of a CSR pattern.

    The weight gradient of a sparse linear layer ``y = x @ w.T`` at its selected weights
    is ``sddmm(dy.T, x.T, rowptr, col)`` (the float64 kernel; float32 by torch, as float32
    layers run :func:`linear_weight_sampled`): the rows of ``a`` and ``b`` are contiguous, so
    each entry is one contiguous dot product (four entries of a row share each load of
    ``a[v]``).

    Args:
        a: ``[rows, L]``.
        b: ``[n, L]``, dtype of ``a``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` column of each nonzero (a row of ``b``).

    Returns:
        ``[nnz]``.

    Example:
        >>> import torch
        >>> from graphwire._native.grads import sddmm
        >>> a, b = torch.randn(3, 5), torch.randn(4, 5)
        >>> rowptr, col = torch.tensor([0, 2, 2, 3]), torch.tensor([1, 3, 0])
        >>> torch.allclose(sddmm(a, b, rowptr, col), (a @ b.T)[[0, 0, 2], [1, 3, 0]])
        True
    """
    eager = type(a) is Tensor and not torch.compiler.is_compiling()
    return (_sddmm if eager else _sddmm_op)(a, b, rowptr, col)


@_sddmm_op.register_fake
def _(a: Tensor, b: Tensor, rowptr: Tensor, col: Tensor) -> Tensor:
    return a.new_empty(col.shape[0])


def _torch_linear_weight_sampled(
    x: Tensor, dy: Tensor, rowptr: Tensor, col: Tensor, flat: Tensor
) -> Tensor:
    """:func:`linear_weight_sampled` by :func:`sddmm` on transposed copies, scattered."""
    grad = dy.new_zeros(dy.shape[1], x.shape[1])
    grad.view(-1)[flat] = sddmm(dy.t().contiguous(), x.t().contiguous(), rowptr, col)
    return grad


def _linear_weight_sampled(
    x: Tensor, dy: Tensor, rowptr: Tensor, col: Tensor, flat: Tensor
) -> Tensor:
    """The body of :func:`linear_weight_sampled`."""
    lib = load() if x.device.type == "cpu" else None
    if lib is None or not x.dtype == dy.dtype == torch.float32:
        return _torch_linear_weight_sampled(x, dy, rowptr, col, flat)
    x, dy = x.contiguous(), dy.contiguous()
    (rows, n), m = x.shape, dy.shape[1]
    grad = x.new_zeros(m, n)
    indices = [t.contiguous() for t in (rowptr, col, flat)]  # kept alive for the call
    failed = lib.gw_linear_wgrad_f32(
        x.data_ptr(),
        dy.data_ptr(),
        *(t.data_ptr() for t in indices),
        grad.data_ptr(),
        rows,
        n,
        m,
        torch.get_num_threads(),
    )
    if failed:
        return _torch_linear_weight_sampled(x, dy, rowptr, col, flat)
    return grad


_linear_wgrad_op = torch.library.custom_op(
    "graphwire::linear_weight_sampled", _linear_weight_sampled, mutates_args=()
)


def linear_weight_sampled(
    x: Tensor, dy: Tensor, rowptr: Tensor, col: Tensor, flat: Tensor
) -> Tensor:
    """The weight gradient of a sparse linear layer ``y = x @ w.T``, at its nonzeros only.

    ``grad[v, u] = sum over r of dy[r, v] * x[r, u]`` where ``(v, u)`` is a nonzero of the
    CSR pattern ``(rowptr, col)`` (``flat`` its index ``v * n + u``), zero elsewhere: the
    dense ``[m, n]`` gradient a masked dense layer gives, without its dense product. The
    float32 CPU kernel transposes blocks of 64 rows of ``x`` and ``dy`` into a thread's
    buffer (as :func:`~graphwire._native.ops.csr_linear` does) and adds one 64-long dot
    product per nonzero and block; other dtypes run :func:`sddmm` on transposed copies.

    Args:
        x: The layer's input ``[R, n]``.
        dy: The gradient of its output ``[R, m]``.
        rowptr: int64 ``[m + 1]`` CSR row pointers.
        col: int64 ``[nnz]`` column of each nonzero.
        flat: int64 ``[nnz]`` row-major index ``v * n + u`` of each nonzero.

    Returns:
        ``[m, n]``, dtype of ``x``.

    Example:
        >>> import torch
        >>> from graphwire._native.grads import linear_weight_sampled, mask_pattern
        >>> x, dy = torch.randn(70, 6), torch.randn(70, 4)
        >>> mask = torch.rand(4, 6) < 0.5
        >>> rowptr, col, flat = mask_pattern(mask)[:3]
        >>> g = linear_weight_sampled(x, dy, rowptr, col, flat)
        >>> torch.allclose(g, (dy.T @ x) * mask, atol=1e-5)
        True
    """
    eager = type(x) is Tensor and not torch.compiler.is_compiling()
    op = _linear_weight_sampled if eager else _linear_wgrad_op
    return op(x, dy, rowptr, col, flat)


@_linear_wgrad_op.register_fake
def _(x: Tensor, dy: Tensor, rowptr: Tensor, col: Tensor, flat: Tensor) -> Tensor:
    return x.new_empty(dy.shape[1], x.shape[1])


def _phases(x: Tensor, geometry: list[int]) -> Tensor:
    """``x`` ``[B, C, H, W]`` zero-padded and split into its stride phases, flattened.

    ``[B, C * sh * sw, rows_q * cols_q]``: what the kernels build in scratch memory.
    """
    top, left, sh, sw, rows_q, cols_q = geometry[:6]
    batch, channels, height, width = x.shape
    x = F.pad(x, (left, cols_q * sw - width - left, top, rows_q * sh - height - top))
    if (sh, sw) != (1, 1):  # [B, C, sh, sw, rows_q, cols_q]
        x = x.reshape(batch, channels, rows_q, sh, cols_q, sw).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(batch, channels * sh * sw, rows_q * cols_q)


def _torch_conv2d_weight_sampled(
    x: Tensor,
    dy: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    geometry: list[int],
) -> Tensor:
    """:func:`conv2d_weight_sampled` by torch: per distinct shift, a dense product."""
    cols_q, out_h, out_w = geometry[5], geometry[6], geometry[7]
    batch, rows = dy.shape[:2]
    length = out_h * cols_q
    xq = _phases(x, geometry)  # [B, n, P]
    wide = F.pad(dy, (0, cols_q - out_w)).reshape(batch, rows, length)  # [B, m, L]
    offset = shift_row * cols_q + shift_col
    if offset.numel() and int(offset.max()) + length > xq.shape[2]:
        raise ValueError("conv2d_weight_sampled reads past its padded input: the geometry is wrong")
    row = _rows_of(rowptr)
    out = dy.new_zeros(col.numel())
    for off in torch.unique(offset).tolist():
        at = (offset == off).nonzero().flatten()
        window = xq[:, :, off : off + length]  # [B, n, L]
        dense = torch.einsum("bml,bnl->mn", wide, window)  # [m, n]
        out[at] = dense[row[at], col[at]]
    return out


def _conv2d_weight_sampled(
    x: Tensor,
    dy: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    geometry: list[int],
) -> Tensor:
    """The body of :func:`conv2d_weight_sampled`."""
    lib = load() if x.device.type == "cpu" else None
    args = (x, dy, rowptr, col, shift_row, shift_col, geometry)
    if lib is None or not x.dtype == dy.dtype == torch.float32:
        return _torch_conv2d_weight_sampled(*args)
    x, dy = x.contiguous(), dy.contiguous()
    batch, channels, height, width = x.shape
    sizes = (batch, channels, height, width, *geometry[:6], dy.shape[1], *geometry[6:])
    out = x.new_empty(col.numel())
    buffers = [b.contiguous() for b in (rowptr, col, shift_row, shift_col)]  # kept alive
    failed = lib.gw_conv_wgrad_f32(
        x.data_ptr(),
        dy.data_ptr(),
        *(b.data_ptr() for b in buffers),
        out.data_ptr(),
        (ctypes.c_int64 * 13)(*sizes),
        torch.get_num_threads(),
    )
    if failed == 2:
        raise ValueError("conv2d_weight_sampled reads past its padded input: the geometry is wrong")
    if failed:
        return _torch_conv2d_weight_sampled(*args)
    return out


_conv_wgrad_op = torch.library.custom_op(
    "graphwire::conv2d_weight_sampled", _conv2d_weight_sampled, mutates_args=()
)


def conv2d_weight_sampled(
    x: Tensor,
    dy: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    geometry: list[int],
) -> Tensor:
    """The weight gradient of a sparse convolution at its nonzeros, ``[nnz]``.

    For the layout of :func:`~graphwire._native.ops.sparse_conv2d` (``rowptr`` over output
    channels, ``col`` the stride phase, ``shift_row`` / ``shift_col`` the shift, from
    :func:`~graphwire._native.ops.conv_layout`, and ``geometry`` from
    :func:`~graphwire._native.ops.conv_geometry`): entry ``e`` of output channel ``v`` is
    the sum over images and output positions of ``dy[g, v, h, w]`` times the input its
    weight multiplied there. The float32 CPU kernel builds each image's padded phases and
    its output gradient widened to ``cols_q`` columns in per-thread scratch memory; each
    entry is then one contiguous dot product per image.

    Args:
        x: The convolution's input ``[B, C, H, W]`` (padded already where its padding mode
            is not zeros).
        dy: The gradient of its output ``[B, rows, out_h, out_w]``.
        rowptr: int64 ``[rows + 1]`` CSR row pointers over output channels.
        col: int64 ``[nnz]`` phase channel of each nonzero.
        shift_row: int64 ``[nnz]`` shift in phase rows.
        shift_col: int64 ``[nnz]`` shift in phase columns.
        geometry: ``[top, left, sh, sw, rows_q, cols_q, out_h, out_w]``.

    Returns:
        ``[nnz]``, dtype of ``x``.

    Raises:
        ValueError: if a shift reads past the padded phase images.

    Example:
        >>> import torch
        >>> from graphwire._native.grads import conv2d_weight_sampled
        >>> from graphwire._native.ops import conv_geometry, conv_layout
        >>> x, dy = torch.randn(2, 3, 6, 6), torch.randn(2, 4, 6, 6)
        >>> o, c, i, j = torch.ones(4, 3, 3, 3).nonzero().t()
        >>> col, sr, sc = conv_layout(c, i, j, (1, 1), (1, 1))
        >>> rowptr = torch.arange(0, 109, 27)
        >>> g = conv_geometry((6, 6), (1, 1, 1, 1), (3, 3), (1, 1), (1, 1), (2, 2))
        >>> dense = torch.nn.grad.conv2d_weight(x, (4, 3, 3, 3), dy, padding=1)
        >>> sampled = conv2d_weight_sampled(x, dy, rowptr, col, sr, sc, g)
        >>> torch.allclose(sampled, dense.flatten(), atol=1e-5)
        True
    """
    eager = type(x) is Tensor and not torch.compiler.is_compiling()
    op = _conv2d_weight_sampled if eager else _conv_wgrad_op
    return op(x, dy, rowptr, col, shift_row, shift_col, geometry)


@_conv_wgrad_op.register_fake
def _(
    x: Tensor,
    dy: Tensor,
    rowptr: Tensor,
    col: Tensor,
    shift_row: Tensor,
    shift_col: Tensor,
    geometry: list[int],
) -> Tensor:
    return x.new_empty(col.shape[0])
