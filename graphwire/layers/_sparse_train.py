"""Sparse training of the wired layers: sparse forward and backward products.

A masked dense step (the paper's way, and rigl-torch's) multiplies by the whole weight
and computes the whole weight gradient, selected or not. Here a wired ``Linear``,
``Conv1d`` or ``Conv2d`` whose rule needs no dense weight gradient at this step
(:meth:`~graphwire.wiring.WiringRule.dense_weight_grad`: RigL between updates, SET,
a fixed mask, pruning) runs three sparse products instead:

- the forward product by the selected weights (``graphwire::csr_linear``,
  ``graphwire::sparse_conv2d``);
- the input gradient, the transposed sparse product (the same kernels on the transposed
  pattern: for a convolution, the flipped kernel over the output gradient, with zeros
  between its rows and columns for a stride);
- the weight gradient at the selected weights only (``graphwire::linear_weight_sampled``,
  ``graphwire::conv2d_weight_sampled``); the gradient of every other weight is zero.

A rule that needs the dense gradient (DNW every step, RigL on an update step) keeps the
sparse forward and input gradient and computes the dense weight gradient as a dense
layer does. The layout (CSR patterns of the mask, by output and by input) is built from
the mask at every call: nothing is kept between calls.

Which layers run sparse is the cost model's choice
(:func:`~graphwire._native.ops.sparse_pays`, kinds ``"train_linear"`` and
``"train_conv"``): float32 on a CPU with the compiled kernels, at most a switch
density for the size of the layer's dense product (and a lower one where the step needs
the dense weight gradient); a layer's ``kernel`` attribute (``"auto"``, ``"dense"``,
``"sparse"``) overrides it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire._native.grads import (
    conv2d_weight_sampled,
    conv_mask_pattern,
    count_selected,
    linear_weight_sampled,
    mask_pattern,
)
from graphwire._native.ops import (
    KERNELS,
    conv_geometry,
    conv_pads,
    csr_linear,
    sparse_conv2d,
    sparse_pays,
)
from graphwire._utils import choose
from graphwire.errors import ConfigError
from graphwire.wiring import WiringRule

__all__ = [
    "ConvPattern",
    "LinearPattern",
    "check_kernel",
    "conv_supported",
    "conv_pattern",
    "linear_pattern",
    "sparse_conv",
    "sparse_linear",
    "uses_sparse",
]


def check_kernel(kernel: str) -> str:
    """``kernel`` if it is one of ``KERNELS``; else a ``ConfigError`` naming them."""
    choose("kernel", kernel, dict.fromkeys(KERNELS), ConfigError)
    return kernel


class LinearPattern(NamedTuple):
    """The selected weights of a ``[m, n]`` linear weight, by output and by input.

    ``flat`` indexes ``weight.view(-1)`` in row-major order, ``(rowptr, col)`` is the CSR
    pattern over the ``m`` outputs; ``flat_t``, ``rowptr_t`` and ``col_t`` the same
    weights ordered by input (the CSR pattern of the transpose, over the ``n`` inputs).
    """

    rowptr: Tensor
    col: Tensor
    flat: Tensor
    rowptr_t: Tensor
    col_t: Tensor
    flat_t: Tensor


def linear_pattern(mask: Tensor) -> LinearPattern:
    """The :class:`LinearPattern` of a boolean ``[m, n]`` mask.

    Example:
        >>> import torch
        >>> from graphwire.layers._sparse_train import linear_pattern
        >>> p = linear_pattern(torch.tensor([[True, False, True], [False, True, False]]))
        >>> p.rowptr.tolist(), p.col.tolist(), p.rowptr_t.tolist(), p.col_t.tolist()
        ([0, 2, 3], [0, 2, 1], [0, 1, 2, 3], [0, 1, 0])
    """
    return LinearPattern(*mask_pattern(mask))


class ConvPattern(NamedTuple):
    """The selected weights of a convolution in :func:`sparse_conv2d`'s layout, twice.

    ``rowptr``, ``col``, ``shift_row``, ``shift_col``, ``flat``: the forward convolution
    (rows are output channels, columns stride phases of the input). The ``_t`` fields:
    the transposed convolution of the input gradient (rows are input channels, columns
    output channels, the kernel flipped, stride 1 over the output gradient with zeros
    inserted).
    """

    rowptr: Tensor
    col: Tensor
    shift_row: Tensor
    shift_col: Tensor
    flat: Tensor
    rowptr_t: Tensor
    col_t: Tensor
    shift_row_t: Tensor
    shift_col_t: Tensor
    flat_t: Tensor


def conv_pattern(
    mask: Tensor, groups: int, stride: tuple[int, int], dilation: tuple[int, int]
) -> ConvPattern:
    """The :class:`ConvPattern` of a boolean ``[C_out, C_in / groups, kh, kw]`` mask."""
    return ConvPattern(*conv_mask_pattern(mask, groups, stride, dilation))


def _gathered(weight: Tensor, flat: Tensor) -> Tensor:
    """The selected weights' values, in the pattern's order."""
    return weight.detach().reshape(-1).index_select(0, flat)


def _scattered(weight: Tensor, flat: Tensor, values: Tensor) -> Tensor:
    """A gradient of ``weight``'s shape: ``values`` at ``flat``, zero elsewhere."""
    grad = torch.zeros_like(weight)
    grad.view(-1)[flat] = values
    return grad


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pattern: LinearPattern, dense_grad: bool):  # noqa: D102
        out = weight.shape[0]
        y = csr_linear(x, pattern.rowptr, pattern.col, _gathered(weight, pattern.flat), bias, out)
        ctx.save_for_backward(x, weight)
        ctx.pattern, ctx.dense_grad = pattern, dense_grad
        return y  # [R, out]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):  # noqa: D102
        x, weight = ctx.saved_tensors
        p: LinearPattern = ctx.pattern
        dy = dy.contiguous()  # [R, out]
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # dy @ (w * mask): the transposed pattern
            val_t = _gathered(weight, p.flat_t)
            dx = csr_linear(dy, p.rowptr_t, p.col_t, val_t, None, weight.shape[1])
        if ctx.needs_input_grad[1]:
            if ctx.dense_grad:
                dw = dy.t() @ x
            else:  # dy.T @ x at the selected weights only
                dw = linear_weight_sampled(x, dy, p.rowptr, p.col, p.flat)
        if ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db, None, None


def sparse_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None, mask: Tensor, dense_weight_grad: bool
) -> Tensor:
    """``F.linear(x, weight * mask, bias)`` by sparse products, forward and backward.

    The gradient of ``weight`` is the masked dense one's (zero where ``mask`` is not
    set), or with ``dense_weight_grad`` the gradient of every weight (a straight-through
    rule's).
    """
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])  # [R, in]
    y = _SparseLinear.apply(x2, weight, bias, linear_pattern(mask), dense_weight_grad)
    return y.reshape(*lead, weight.shape[0])  # [..., out]


class _ConvArgs(NamedTuple):
    """What the sparse convolution reads of its layer (2-D: a 1-D layer has height 1)."""

    pads: tuple[int, int, int, int]  # (left, right, top, bottom) zeros, added by the kernel
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pattern: ConvPattern, args: _ConvArgs, dense_grad: bool):  # noqa: D102
        kh, kw = weight.shape[2:]
        (dh, dw), (sh, sw) = args.dilation, args.stride
        max_shift = ((kh - 1) * dh // sh, (kw - 1) * dw // sw)
        geometry = conv_geometry(
            x.shape[-2:], args.pads, (kh, kw), args.dilation, args.stride, max_shift
        )
        val = _gathered(weight, pattern.flat)
        p = pattern
        y = sparse_conv2d(
            x, p.rowptr, p.col, p.shift_row, p.shift_col, val, bias, weight.shape[0], geometry
        )
        ctx.save_for_backward(x, weight)
        ctx.pattern, ctx.args, ctx.geometry, ctx.dense_grad = pattern, args, geometry, dense_grad
        return y  # [B, C_out, H', W']

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):  # noqa: D102
        x, weight = ctx.saved_tensors
        p: ConvPattern = ctx.pattern
        args: _ConvArgs = ctx.args
        dy = dy.contiguous()  # [B, C_out, H', W']
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _conv_input_grad(dy, weight, p, args, x.shape[-2:])
        if ctx.needs_input_grad[1]:
            if ctx.dense_grad:
                dw = _dense_weight_grad(x, dy, weight, args)
            else:
                sampled = conv2d_weight_sampled(
                    x, dy, p.rowptr, p.col, p.shift_row, p.shift_col, ctx.geometry
                )
                dw = _scattered(weight, p.flat, sampled)
        if ctx.needs_input_grad[2]:
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None, None


def _conv_input_grad(dy: Tensor, weight: Tensor, p: ConvPattern, args: _ConvArgs, size) -> Tensor:
    """The input gradient: the flipped kernel over ``dy`` (zeros between, for a stride)."""
    kh, kw = weight.shape[2:]
    (dh, dw), (sh, sw) = args.dilation, args.stride
    left, _, top, _ = args.pads
    if (sh, sw) != (1, 1):  # the output gradient at every stride-th position, zeros between
        batch, out_ch, out_h, out_w = dy.shape
        spread = dy.new_zeros(batch, out_ch, (out_h - 1) * sh + 1, (out_w - 1) * sw + 1)
        spread[:, :, ::sh, ::sw] = dy
        dy = spread
    pads = (dw * (kw - 1) - left, 0, dh * (kh - 1) - top, 0)
    max_shift = ((kh - 1) * dh, (kw - 1) * dw)
    geometry = conv_geometry(
        dy.shape[-2:], pads, (kh, kw), args.dilation, (1, 1), max_shift, tuple(size)
    )
    val_t = _gathered(weight, p.flat_t)
    channels = weight.shape[1] * args.groups
    return sparse_conv2d(
        dy, p.rowptr_t, p.col_t, p.shift_row_t, p.shift_col_t, val_t, None, channels, geometry
    )


def _dense_weight_grad(x: Tensor, dy: Tensor, weight: Tensor, args: _ConvArgs) -> Tensor:
    """Every weight's gradient (a straight-through rule's), as a dense convolution's."""
    left, right, top, bottom = args.pads
    if (left, top) != (right, bottom):  # asymmetric ("same" with an even kernel): pad first
        x, padding = F.pad(x, args.pads), (0, 0)
    else:
        padding = (top, left)
    return torch.nn.grad.conv2d_weight(
        x, weight.shape, dy, args.stride, padding, args.dilation, args.groups
    )


def sparse_conv(conv: nn.Module, x: Tensor, mask: Tensor, dense_weight_grad: bool) -> Tensor:
    """``conv``'s convolution with ``conv.weight * mask``, by sparse products both ways.

    ``conv`` is a wired ``Conv1d`` or ``Conv2d`` that :func:`conv_supported` accepts; the
    gradients are as for :func:`sparse_linear`.
    """
    one_d = isinstance(conv, nn.Conv1d)
    unbatched = x.dim() == (2 if one_d else 3)
    if unbatched:
        x = x.unsqueeze(0)
    pads = conv_pads(conv)
    if conv.padding_mode != "zeros":  # the layer's own padding by its mode; then none
        x, pads = F.pad(x, pads, mode=conv.padding_mode), (0,) * len(pads)
    weight = conv.weight
    if one_d:  # a height-1 2-D convolution
        x, weight, mask = x.unsqueeze(2), weight.unsqueeze(2), mask.unsqueeze(2)
        args = _ConvArgs((*pads, 0, 0), (1, conv.stride[0]), (1, conv.dilation[0]), conv.groups)
    else:
        args = _ConvArgs(tuple(pads), tuple(conv.stride), tuple(conv.dilation), conv.groups)
    pattern = conv_pattern(mask, conv.groups, args.stride, args.dilation)
    y = _SparseConv.apply(x, weight, conv.bias, pattern, args, dense_weight_grad)
    if one_d:
        y = y.squeeze(2)
    return y.squeeze(0) if unbatched else y


def conv_supported(conv: nn.Module) -> bool:
    """Whether :func:`sparse_conv` runs ``conv``.

    A ``Conv1d`` / ``Conv2d`` whose input gradient is a transposed convolution with
    padding ``>= 0``: padding at most the dilated kernel's reach, as in every common
    network.
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
        return False
    pads = conv_pads(conv) if conv.padding_mode == "zeros" else (0,) * (2 * len(conv.kernel_size))
    reach = [d * (k - 1) for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size))]
    return all(pads[2 * a] <= reach[a] for a in range(len(reach)))


def uses_sparse(layer: nn.Module, kind: str, x: Tensor) -> bool:
    """Whether wired ``layer`` runs this call by sparse products (the per-layer choice).

    Never for a layer without a budget, a rule with its own effective weight, under
    autocast or while ``torch.compile`` traces; with ``layer.kernel == "sparse"`` always
    else; with ``"auto"`` where :func:`~graphwire._native.ops.sparse_pays` says the
    ``kind`` (``"train_linear"``, ``"train_conv"``) pays for the layer's density and the
    size of its dense product on ``x``'s device and dtype (CUDA keeps the dense path).
    """
    kernel = layer.kernel
    if kind not in ("train_linear", "train_conv") or kernel == "dense":
        return False
    if layer.shared_budget is None:
        return False
    if type(layer.rule).effective_weight is not WiringRule.effective_weight:
        return False
    if kind == "train_conv" and not conv_supported(layer):
        return False
    if torch.is_autocast_enabled(x.device.type) or torch.compiler.is_compiling():
        return False
    if kernel == "sparse":
        return True
    if x.dtype != layer.weight.dtype:
        return False
    if kind == "train_linear":
        rows = x.numel() // max(x.shape[-1], 1)
    else:  # output positions: the input's, over the stride
        batch = x.shape[0] if x.dim() == layer.weight.dim() else 1
        rows = batch * math.prod(
            s // t for s, t in zip(x.shape[-len(layer.stride) :], layer.stride)
        )
    nnz = count_selected(layer.edge_mask)
    dense_grad = layer.shared_budget.dense_weight_grad()
    return sparse_pays(kind, nnz, layer.weight.numel(), x.device, x.dtype, rows, dense_grad)
