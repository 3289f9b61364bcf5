"""Frozen sparse layers: a plain ``Linear`` / ``Conv1d`` / ``Conv2d`` run by the CSR kernel.

:func:`graphwire.freeze` freezes every wired layer into the plain layer with its
effective weight and then, layer by layer, keeps that dense layer or swaps in one of
these modules, by the cost model (or as forced by ``kernel=``):

- :class:`SparseLinear`: ``y = x @ W.T + b`` with ``W`` in CSR form, on the rows of ``x``
  in place (``graphwire::csr_linear``: blocks of 64 rows transposed in registers);
- :class:`SparseConv2d`: a ``k x k`` convolution as *shifted sparse channel mixes*
  without im2col: the input is padded (any ``padding_mode``) and flattened, and every
  nonzero weight ``w[o, c, i, j]`` adds ``w`` times input channel ``c`` shifted by
  ``i * W_pad + j`` to output channel ``o``, in one walk over the nonzeros (outputs are
  computed on the padded width and cropped). A stride ``s`` splits the padded input
  into its ``s x s`` phase images first, which turns the convolution into a stride-1
  one over ``C * s^2`` channels; dilation only changes the shifts; groups are a
  block-diagonal weight. On a CPU in float32 all of it (zero padding into scratch
  memory, phases, mixes, bias, crop) is one native call, ``graphwire::sparse_conv2d``.
  A 1 x 1 convolution without padding or stride is one channel mix of the input
  (``graphwire::csr_mix``);
- :class:`SparseConv1d`: the same for 1-D signals (a height-1 image).

All three hold only buffers (``rowptr``, ``col``, ``val``, ``bias``) and plain
attributes, so they save and load with ``state_dict``, run under
``torch.inference_mode`` and export with :func:`torch.export.export` (the kernel is the
custom operators ``graphwire::csr_mix`` and ``graphwire::shift_mix``, registered with
shape-only implementations).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphwire._native.ops import (
    SparseConvCall,
    conv_geometry,
    conv_layout,
    conv_pads,
    csr,
    epilogue,
    sparse_conv2d,
    sparse_pays,
)
from graphwire.export._blocks import register_ell, sparse_mix

__all__ = ["SparseLinear", "SparseConv1d", "SparseConv2d", "sparse_layer"]


class SparseLinear(nn.Module):
    """A frozen ``nn.Linear`` whose weight is kept in CSR form and run by the sparse kernel.

    Where its rows are of (nearly) one length, as under a constant fan-in
    (``fan_in="constant"``), the weight is also kept in ELL form
    (``ell_layout``), and inputs of at most ``ELL_MAX_ROWS`` (8) rows run by
    ``graphwire::ell_mix``
    (row-major, no transposes) instead of the CSR kernel. Other inputs run by the
    custom operator ``graphwire::csr_linear``: blocks of 64 rows transposed in
    registers, walked once per block, the bias added in the kernel.

    Args:
        linear: The dense layer (its zeros are dropped; ``weight`` is copied).

    Attributes:
        in_features: Input features.
        out_features: Output features.
        nnz: Nonzero weights kept.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export import SparseLinear
        >>> dense = nn.Linear(16, 8)
        >>> keep = torch.rand(8, 16, generator=torch.Generator().manual_seed(0)) < 0.2
        >>> with torch.no_grad():
        ...     _ = dense.weight.mul_(keep)
        >>> sparse = SparseLinear(dense)
        >>> x = torch.randn(5, 16)
        >>> torch.allclose(sparse(x), dense(x), atol=1e-6)
        True
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.out_features, self.in_features = weight.shape
        rows, cols = weight.nonzero().t()
        rowptr, col, val = csr(rows, cols, weight[rows, cols], self.out_features)
        self.register_buffer("rowptr", rowptr)
        self.register_buffer("col", col)
        self.register_buffer("val", val)
        register_ell(self, rowptr, col, val)  # rows of one length (constant fan-in)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.nnz = int(val.numel())

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[..., in_features]`` -> ``[..., out_features]``."""
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)  # [R, in]
        b = self._buffers  # one dict, not an nn.Module attribute lookup per buffer
        ell = (b["ell_idx"], b["ell_val"]) if self.ell else None
        y = sparse_mix(x, b["rowptr"], b["col"], b["val"], self.out_features, ell, b["bias"])
        return y.reshape(*lead, self.out_features)  # [..., out]

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, bias={self.bias is not None}"
        )


class SparseConv2d(nn.Module):
    """A frozen ``nn.Conv2d`` run as shifted sparse channel mixes (no im2col).

    The input is padded and flattened; each nonzero weight ``w[o, c, i, j]`` adds ``w``
    times channel ``c`` shifted by ``i * dilation * W_pad + j * dilation`` to output
    channel ``o`` (one walk over the nonzeros per 64 output positions), and the padded
    width is cropped. A stride first splits the padded input into its phase images,
    making the convolution a stride-1 one; ``groups`` make the weight block-diagonal.
    In float32 on a CPU, padding (into per-thread scratch memory, with zeros), phases,
    mixes, bias and crop are one native call (``graphwire::sparse_conv2d``); other
    dtypes pad with torch and run ``graphwire::shift_mix``. A 1 x 1 convolution without
    padding or stride mixes the input channels directly. Every ``padding_mode``,
    ``padding="same"``, stride, dilation and group count are supported.

    A fused *epilogue* (what :func:`graphwire.freeze` sets where the network's next
    operations allow, see :func:`~graphwire.export._fuse.fuse_epilogues`) is applied as the
    kernel stores its outputs: ``forward(x, residual)`` returns ``conv(x) + residual``
    (a residual addition), and with ``fused_relu`` set, the ReLU of that. The results
    equal the separate operations (same order of additions).

    Args:
        conv: The dense convolution (its zeros are dropped; weights are copied).

    Attributes:
        nnz: Nonzero weights kept.
        fused_relu: Apply the ReLU to the output (``False`` until set).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export import SparseConv2d
        >>> dense = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        >>> keep = torch.rand(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.1
        >>> with torch.no_grad():
        ...     _ = dense.weight.mul_(keep)
        >>> x = torch.randn(2, 4, 9, 9)
        >>> torch.allclose(SparseConv2d(dense)(x), dense(x), atol=1e-6)
        True
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self._setup(conv, conv.weight.detach())

    def _setup(self, conv: nn.Module, weight: Tensor) -> None:
        """Shared by the 1-D layer: ``weight`` is ``[C_out, C_in / groups, kh, kw]``."""
        out_ch, in_per_group, kh, kw = weight.shape
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.groups = conv.groups
        self.kernel_size = (kh, kw)
        self.stride = tuple(conv.stride) if len(conv.stride) == 2 else (1, conv.stride[0])
        self.dilation = tuple(conv.dilation) if len(conv.dilation) == 2 else (1, conv.dilation[0])
        pads = conv_pads(conv)
        self.pads = pads if len(pads) == 4 else (*pads, 0, 0)  # (left, right, top, bottom)
        self.padding_mode = conv.padding_mode
        (dh, dw), (sh, sw) = self.dilation, self.stride
        o, ci, i, j = weight.nonzero().t()  # row-major: sorted by output channel
        c = (o // (out_ch // self.groups)) * in_per_group + ci  # input channel
        # a 1 x 1 convolution without padding or stride is one channel mix of the input;
        # with a stride it runs as the others (one native call, no strided copy)
        self.pointwise = (kh, kw) == (1, 1) and not any(self.pads) and (sh, sw) == (1, 1)
        if self.pointwise:
            col = c
        else:  # shifted mixes over the stride's phases of the padded input
            col, shift_row, shift_col = conv_layout(c, i, j, self.stride, self.dilation)
            self.register_buffer("shift_row", shift_row)
            self.register_buffer("shift_col", shift_col)
        rowptr, col, val = csr(o, col, weight[o, ci, i, j], out_ch)
        self.register_buffer("rowptr", rowptr)
        self.register_buffer("col", col)
        self.register_buffer("val", val)
        bias = None if conv.bias is None else conv.bias.detach().clone()
        self.register_buffer("bias", bias)
        self.nnz = int(val.numel())
        self.max_shift = (0, 0) if self.pointwise else ((kh - 1) * dh // sh, (kw - 1) * dw // sw)
        self._geometries: dict[tuple[int, ...], list[int]] = {}  # by input size
        self._direct = SparseConvCall()  # prepared kernel calls: a plain attribute
        self.fused_relu = False

    def _conv(self, x: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, C_out, H', W']``, plus ``residual``, then the ReLU."""
        if self.pointwise:
            y = sparse_mix(x, self.rowptr, self.col, self.val, self.out_channels, bias=self.bias)
            return epilogue(y, residual, relu)
        padded = self.padding_mode != "zeros"
        if padded:  # the layer's own padding by its mode first; the kernel adds zeros
            x = F.pad(x, self.pads, mode=self.padding_mode)
        geometry = self._geometry(x.shape[-2:], padded)
        b = self._buffers  # one dict, not six nn.Module attribute lookups (a hot path)
        buffers = (b["rowptr"], b["col"], b["shift_row"], b["shift_col"], b["val"], b["bias"])
        rows = self.out_channels
        y = self._direct(x, buffers, rows, geometry, residual, relu)  # the kernel, directly
        if y is None:  # other dtypes or devices, tracing, autograd
            y = sparse_conv2d(x, *buffers, rows, geometry, residual, relu)
        return y  # [B, C_out, H', W']

    def _geometry(self, size: tuple[int, int], padded: bool) -> list[int]:
        """``[top, left, sh, sw, rows_q, cols_q, out_h, out_w]`` for an input of ``size``.

        ``size`` is the input's, ``padded`` whether it holds the layer's padding already
        (else the kernel adds it, as zeros). The stride's phase images are ``rows_q x
        cols_q``; output position ``p = h * cols_q + w`` reads phase position ``p +
        shift_row * cols_q + shift_col``, so zero rows are added below for the largest
        shift of the last of the kernel's 64-wide tiles. Kept per size: layers see few.
        """
        key = (*size, padded)
        geometry = self._geometries.get(key)
        if geometry is None:
            pads = (0, 0, 0, 0) if padded else self.pads
            geometry = conv_geometry(
                size, pads, self.kernel_size, self.dilation, self.stride, self.max_shift
            )
            self._geometries[key] = geometry
        return geometry

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``x`` ``[B, C_in, H, W]`` (or unbatched ``[C_in, H, W]``) -> the convolution.

        ``residual`` (optional, the output's shape or broadcastable to it) is added to the
        output; the ReLU follows where ``fused_relu`` is set.
        """
        if x.dim() == 3:
            return epilogue(self._conv(x.unsqueeze(0))[0], residual, self.fused_relu)
        return self._conv(x, residual, self.fused_relu)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, dilation={self.dilation}, pads={self.pads}, "
            f"groups={self.groups}, nnz={self.nnz}, bias={self.bias is not None}"
            + (", fused_relu=True" if self.fused_relu else "")
        )


class SparseConv1d(SparseConv2d):
    """A frozen ``nn.Conv1d`` run by the CSR kernel (as a height-1 :class:`SparseConv2d`).

    Args:
        conv: The dense convolution (its zeros are dropped; weights are copied).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from graphwire.export._layers import SparseConv1d
        >>> dense = nn.Conv1d(4, 6, 5, padding=2, dilation=1)
        >>> x = torch.randn(3, 4, 20)
        >>> torch.allclose(SparseConv1d(dense)(x), dense(x), atol=1e-5)
        True
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        nn.Module.__init__(self)
        self._setup(conv, conv.weight.detach().unsqueeze(2))

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``x`` ``[B, C_in, L]`` (or unbatched ``[C_in, L]``) -> the convolution.

        ``residual`` and ``fused_relu`` as for :class:`SparseConv2d`.
        """
        if x.dim() == 2:
            y = self._conv(x.unsqueeze(0).unsqueeze(2))[0, :, 0]
        else:
            y = self._conv(x.unsqueeze(2)).squeeze(2)
        return epilogue(y, residual, self.fused_relu)


def _kind(layer: nn.Module) -> str | None:
    """The cost model's layer kind, or ``None`` for layers without a sparse path."""
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        pads = conv_pads(layer)
        return "pointwise" if math.prod(layer.kernel_size) == 1 and not any(pads) else "conv"
    return None


def _sparse_pays(layer: nn.Module, kind: str) -> bool:
    """The cost model for one frozen layer of a ``kind`` with a sparse path."""
    weight = layer.weight
    nnz = int(torch.count_nonzero(weight))
    return sparse_pays(kind, nnz, weight.numel(), weight.device, weight.dtype)


def sparse_layer(layer: nn.Module, kernel: str = "auto") -> nn.Module:
    """``layer`` itself (dense) or its sparse module, chosen by ``kernel``.

    Args:
        layer: A plain ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` holding its final
            (effective, compacted) weights; any other layer (``nn.Conv3d``, ...) is
            returned as it is.
        kernel: ``"auto"``: the cost model decides (on the layer's device, dtype and
            fraction of nonzero weights); ``"dense"``: ``layer``; ``"sparse"``: the
            sparse module for every layer that has one (on a GPU it runs by torch
            operations, slowly).

    Returns:
        ``layer`` or a :class:`SparseLinear`, :class:`SparseConv1d` or
        :class:`SparseConv2d` on ``layer``'s device.

    Example:
        >>> from torch import nn
        >>> from graphwire.export._layers import sparse_layer
        >>> type(sparse_layer(nn.Conv2d(3, 4, 3), "sparse")).__name__
        'SparseConv2d'
        >>> type(sparse_layer(nn.Conv3d(3, 4, 3), "sparse")).__name__
        'Conv3d'
    """
    kind = _kind(layer)
    if kind is None or kernel == "dense" or (kernel == "auto" and not _sparse_pays(layer, kind)):
        return layer
    if isinstance(layer, nn.Linear):
        out: nn.Module = SparseLinear(layer)
    elif isinstance(layer, nn.Conv1d):
        out = SparseConv1d(layer)
    else:
        out = SparseConv2d(layer)
    return out.to(layer.weight.device).train(layer.training)
