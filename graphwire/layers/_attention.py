"""``WiredMultiheadAttention``: ``nn.MultiheadAttention`` with wired projections.

``nn.MultiheadAttention`` keeps its query/key/value projections as one bare ``[3E, E]``
parameter (``in_proj_weight``) and passes it, with ``out_proj.weight``, straight to
``F.multi_head_attention_forward``: a mask on those tensors would never be seen. This
module holds the four projections as separate :class:`~graphwire.layers.WiredLinear`
layers and computes the same attention from their outputs, so the projections are
selected (and later frozen) like any other wired layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from graphwire.errors import ConfigError
from graphwire.layers._wired_layers import WiredLinear, wired_copy
from graphwire.wiring import WiringRule, make_rule

__all__ = ["WiredMultiheadAttention"]


def _as_float_mask(mask: Tensor | None, name: str, like: Tensor) -> Tensor | None:
    """A mask as an additive float mask (``True`` in a boolean mask means "masked out")."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=like.dtype).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise ConfigError(f"{name} must be a bool or float tensor; got dtype {mask.dtype}.")
    return mask.to(like.dtype)


class WiredMultiheadAttention(nn.Module):
    """Multi-head attention whose four projections are wired layers.

    It computes what ``nn.MultiheadAttention`` computes for the same weights, with the
    same ``forward`` arguments (``key_padding_mask``, ``need_weights``, ``attn_mask``,
    ``average_attn_weights``, ``is_causal``, batched or unbatched inputs,
    ``batch_first``), from the projections ``q_proj``, ``k_proj``, ``v_proj`` and
    ``out_proj`` (each a :class:`~graphwire.layers.WiredLinear`, each its own budget at
    ``density`` / ``k`` when built directly). :func:`~graphwire.layers.sparsify` builds
    one from an ``nn.MultiheadAttention`` (:meth:`from_dense`). Not supported:
    ``add_bias_kv`` and ``add_zero_attn`` (``sparsify`` leaves such layers dense, with a
    warning).

    For ``torch.nn.TransformerEncoderLayer`` it reports ``in_proj_weight`` and
    ``in_proj_bias`` as ``None`` and separate query/key/value weights, so the layer takes
    its ordinary (non-fused) path, which calls this module.

    Args:
        embed_dim: Model width ``E``.
        num_heads: Heads; must divide ``embed_dim``.
        dropout: Dropout on the attention weights (training only).
        bias: Biases on the projections.
        kdim: Key features (default ``embed_dim``).
        vdim: Value features (default ``embed_dim``).
        batch_first: Inputs and outputs are ``[B, L, E]`` (else ``[L, B, E]``).
        rule: Wiring rule of every projection.
        k: Weights to keep per projection.
        density: Fraction of weights to keep per projection, instead of ``k``.
        seed: Seed of the initial weights (projection ``i`` uses ``seed + i``).
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Example:
        >>> import torch
        >>> from graphwire.layers import WiredMultiheadAttention
        >>> attn = WiredMultiheadAttention(16, 4, batch_first=True, density=0.25, seed=0)
        >>> x = torch.randn(2, 5, 16)
        >>> out, weights = attn(x, x, x)
        >>> out.shape, weights.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 5, 5]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        *,
        rule: str | WiringRule = "dnw",
        k: int | None = None,
        density: float | None = None,
        seed: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self._configure(embed_dim, num_heads, dropout, kdim, vdim, batch_first)
        common = {"bias": bias, "rule": rule, "k": k, "density": density, "device": device}
        seeds = [None if seed is None else seed + i for i in range(4)]
        self.q_proj = WiredLinear(embed_dim, embed_dim, seed=seeds[0], dtype=dtype, **common)
        self.k_proj = WiredLinear(self.kdim, embed_dim, seed=seeds[1], dtype=dtype, **common)
        self.v_proj = WiredLinear(self.vdim, embed_dim, seed=seeds[2], dtype=dtype, **common)
        self.out_proj = WiredLinear(embed_dim, embed_dim, seed=seeds[3], dtype=dtype, **common)

    def _configure(self, embed_dim, num_heads, dropout, kdim, vdim, batch_first) -> None:
        if num_heads < 1 or embed_dim % num_heads:
            raise ConfigError(
                f"num_heads must divide embed_dim; got embed_dim={embed_dim}, "
                f"num_heads={num_heads}."
            )
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout, self.batch_first = float(dropout), batch_first
        # What torch's transformer layers read to decide on their fused fast path: the
        # projections are separate here, so they take the ordinary path (this forward).
        self._qkv_same_embed_dim = False
        self.in_proj_weight = None
        self.in_proj_bias = None

    @classmethod
    def from_dense(
        cls, attention: nn.MultiheadAttention, rule: str | WiringRule = "dnw"
    ) -> WiredMultiheadAttention:
        """The same attention with the weights of ``attention``, projections not yet budgeted.

        The projections are new wired layers holding copies of ``attention``'s weights;
        attach them to a budget (``SharedBudget(list(m.projections()), ...)``), as
        :func:`~graphwire.layers.sparsify` does.

        Args:
            attention: The dense layer.
            rule: Wiring rule of the projections.

        Raises:
            ConfigError: for ``add_bias_kv`` or ``add_zero_attn`` layers.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from graphwire.layers import WiredMultiheadAttention
            >>> from graphwire.wiring import SharedBudget
            >>> dense = nn.MultiheadAttention(8, 2).eval()
            >>> wired = WiredMultiheadAttention.from_dense(dense).eval()
            >>> _ = SharedBudget(list(wired.projections()), density=1.0)
            >>> x = torch.randn(3, 1, 8)
            >>> torch.allclose(wired(x, x, x)[0], dense(x, x, x)[0], atol=1e-6)
            True
        """
        if attention.bias_k is not None or attention.add_zero_attn:
            raise ConfigError(
                "WiredMultiheadAttention does not support add_bias_kv or add_zero_attn; got "
                f"add_bias_kv={attention.bias_k is not None}, "
                f"add_zero_attn={attention.add_zero_attn}."
            )
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        e = attention.embed_dim
        out._configure(
            e,
            attention.num_heads,
            attention.dropout,
            attention.kdim,
            attention.vdim,
            attention.batch_first,
        )
        if attention.in_proj_weight is not None:
            weights = attention.in_proj_weight.detach().chunk(3)
        else:
            weights = tuple(
                getattr(attention, f"{p}_proj_weight").detach() for p in ("q", "k", "v")
            )
        biases = (
            attention.in_proj_bias.detach().chunk(3)
            if attention.in_proj_bias is not None
            else (None, None, None)
        )
        rule = make_rule(rule)
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), weights, biases):
            setattr(out, name, _wired_linear(w, b, rule))
        dense_out = attention.out_proj
        bias = None if dense_out.bias is None else dense_out.bias.detach()
        out.out_proj = _wired_linear(dense_out.weight.detach(), bias, rule)
        return out.train(attention.training)

    def projections(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        """``(q_proj, k_proj, v_proj, out_proj)``."""
        return self.q_proj, self.k_proj, self.v_proj, self.out_proj

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention of ``query`` over ``key`` / ``value``, as ``nn.MultiheadAttention``.

        Args:
            query: ``[L, B, E]`` (``[B, L, E]`` if ``batch_first``) or unbatched ``[L, E]``.
            key: ``[S, B, kdim]`` likewise.
            value: ``[S, B, vdim]`` likewise.
            key_padding_mask: ``[B, S]`` (``[S]`` unbatched); ``True`` or ``-inf`` ignores
                a key.
            need_weights: Also return the attention weights.
            attn_mask: ``[L, S]`` or ``[B * num_heads, L, S]``; boolean (``True`` is masked
                out) or additive float.
            average_attn_weights: Average the returned weights over heads.
            is_causal: A hint that ``attn_mask`` is the causal mask; it must be given.

        Returns:
            ``(output, weights)``: output like ``query``; weights ``[B, L, S]`` (or ``[B,
            num_heads, L, S]`` without averaging), ``None`` unless ``need_weights``.
        """
        if is_causal and attn_mask is None:
            raise ConfigError("is_causal=True needs attn_mask (the causal mask) as well.")
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        batch, length, _ = query.shape  # [B, L, E] from here: projections on contiguous rows
        source = key.shape[1]
        heads, head_dim = self.num_heads, self.head_dim

        def split(t: Tensor, n: int) -> Tensor:  # [B, n, E] -> [B, heads, n, head_dim]
            return t.reshape(batch, n, heads, head_dim).transpose(1, 2)

        q = split(self.q_proj(query), length)
        k = split(self.k_proj(key), source)
        v = split(self.v_proj(value), source)
        mask = _as_float_mask(attn_mask, "attn_mask", q)
        if mask is not None:
            mask = mask.view(1, 1, length, source) if mask.dim() == 2 else mask
            mask = mask.reshape(-1, heads, length, source) if mask.dim() == 3 else mask
        pad = _as_float_mask(key_padding_mask, "key_padding_mask", q)
        if pad is not None:
            pad = pad.view(batch, 1, 1, source)
            mask = pad if mask is None else mask + pad
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * math.sqrt(1.0 / head_dim), k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            if dropout > 0.0:
                weights = F.dropout(weights, p=dropout)
            out = torch.matmul(weights, v)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, self.embed_dim))
        if not batched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        if not self.batch_first:
            out = out.transpose(0, 1)  # [L, B, E]
        return out, weights

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"dropout={self.dropout}, batch_first={self.batch_first}"
        )


def _wired_linear(weight: Tensor, bias: Tensor | None, rule: WiringRule) -> WiredLinear:
    """A wired layer holding copies of ``weight`` / ``bias``, not yet in a budget."""
    factory = {"device": weight.device, "dtype": weight.dtype}
    dense = skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias is not None, **factory)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if bias is not None:
            dense.bias.copy_(bias)
    return wired_copy(dense, rule)
