"""The one top-k of graphwire: edge budgets per scope and the selection of edges.

Every wiring rule, executor and benchmark selects edges through :func:`select_topk`;
there is no second implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from graphwire.errors import SelectionError
from graphwire.wiring import _select

__all__ = ["select_topk", "apportion", "resolve_budget", "distribute_budget", "DISTRIBUTIONS"]

#: How a total budget is spread over the layers of :func:`~graphwire.layers.sparsify` or
#: the node groups of a :class:`~graphwire.WiredGraph`: ``"uniform"`` (the same density
#: everywhere), ``"erk"`` (Erdos-Renyi-Kernel, as in RigL) or ``"global"`` (one top-k over
#: everything, no split).
DISTRIBUTIONS = ("uniform", "erk", "global")


#: Above this many scores the threshold is found in a band bracketed by a sample.
_SAMPLED_ABOVE = 1 << 20
_SAMPLE_SIZE = 1 << 16


def _kth_largest(scores: Tensor, k: int) -> Tensor:
    """The ``k``-th largest value of ``scores`` (``0 < k < n``), exactly.

    For large inputs a strided sample brackets the value between two sample quantiles
    ``lo <= t <= hi``; counting the scores above ``hi`` and running the partial selection
    only on the scores in ``[lo, hi]`` (about 1% of them) gives the exact value in a few
    linear passes. When the bracket misses (an adversarial order), it falls back to one
    partial selection over all scores.
    """
    n = scores.numel()
    if n > _SAMPLED_ABOVE:
        sample = scores[:: n // _SAMPLE_SIZE].sort(descending=True).values
        m = sample.numel()
        rank, margin = k * m / n, 4.0 * (k * m / n * (1 - k / n)) ** 0.5 + 16
        hi_rank, lo_rank = int(rank - margin), int(rank + margin)
        hi = sample[hi_rank] if hi_rank >= 0 else scores.new_tensor(float("inf"))
        lo = sample[lo_rank] if lo_rank < m else scores.new_tensor(float("-inf"))
        need = k - int(torch.count_nonzero(scores > hi))
        band = scores[(scores <= hi) & (scores >= lo)]
        if 0 < need <= band.numel():
            return torch.topk(band, need, sorted=False).values.min()
    return torch.topk(scores, k, sorted=False).values.min()


def _nan_error(scores: Tensor) -> SelectionError:
    return SelectionError(
        f"scores contain {int(torch.isnan(scores).sum())} NaN values; training has "
        "diverged (lower the learning rate) or the weights were corrupted."
    )


def _topk_1d(scores: Tensor, k: int, magnitude: bool = False) -> Tensor:
    """Boolean mask of the ``k`` largest ``scores`` (``|scores|``); ties go to the lower index.

    Runs in linear time, never a full sort: on a CPU, large float32 inputs go through the
    native radix select (three passes, no full-size temporaries); otherwise a partial
    selection finds the threshold (on a sample-bracketed band for large inputs), then
    comparisons.
    """
    n = scores.numel()
    if 0 < k < n:
        try:
            mask = _select.topk_mask(scores, k, magnitude=magnitude)
        except ValueError:
            raise _nan_error(scores) from None
        if mask is not None:
            return mask
    if magnitude:
        scores = scores.abs()
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return mask
    if k >= n:
        return mask.fill_(True)
    threshold = _kth_largest(scores, k)
    torch.ge(scores, threshold, out=mask)
    extra = int(torch.count_nonzero(mask)) - k
    if extra:  # ties at the threshold: drop the highest-index ones
        ties = (scores == threshold).nonzero().flatten()
        mask[ties[ties.numel() - extra :]] = False
    return mask


def select_topk(
    scores: Tensor,
    k: Tensor | Sequence[int],
    members: Sequence[Tensor] | None = None,
    *,
    magnitude: bool = False,
) -> Tensor:
    """Select the ``k`` highest-scoring edges in each scope.

    Args:
        scores: ``[E]`` scores (DNW ranks by ``|w|``).
        k: Edges to keep in each scope, one count per entry of ``members``.
        members: The edge indices of each scope (disjoint); ``None`` means one global
            scope over all ``E`` edges, and ``k`` then holds one count.
        magnitude: Rank by ``|scores|`` (pass the weights themselves: large float32
            vectors on a CPU are then ranked without a ``|w|`` temporary).

    Returns:
        A boolean ``[E]`` mask with exactly ``k[s]`` edges set among ``members[s]``. Ties
        are broken towards the lower edge index, so the result is deterministic.

    Raises:
        SelectionError: if a score is NaN (training has diverged).

    Example:
        >>> import torch
        >>> from graphwire.wiring.topk import select_topk
        >>> select_topk(torch.tensor([0.5, 2.0, 0.5, 1.0]), [2]).tolist()
        [False, True, False, True]
        >>> select_topk(torch.tensor([1.0, 1.0, 1.0]), [2]).tolist()  # ties: lower index
        [True, True, False]
    """
    ks = [int(x) for x in k]
    # One reduction screens for NaN (the native path checks in its first pass); the exact
    # count runs only when it finds one.
    native = members is None and 0 < ks[0] < scores.numel() and _select.applies(scores)
    if not native and not torch.isfinite(scores.sum()) and torch.isnan(scores).any():
        raise _nan_error(scores)
    if members is None:
        return _topk_1d(scores, ks[0], magnitude)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    for idx, kk in zip(members, ks):
        mask[idx[_topk_1d(scores[idx], kk, magnitude)]] = True
    return mask


def apportion(total: int, sizes: Sequence[int]) -> list[int]:
    """Split ``total`` over scopes in proportion to ``sizes`` (largest remainder).

    Example:
        >>> from graphwire.wiring.topk import apportion
        >>> apportion(10, [1, 1, 2])
        [3, 2, 5]
    """
    whole = sum(sizes)
    exact = [total * s / whole for s in sizes]
    shares = [int(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (shares[i] - exact[i], i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def resolve_budget(
    sizes: Sequence[int],
    *,
    k: int | Mapping[str, int] | None,
    density: float | None,
    names: Sequence[str] | None = None,
) -> list[int]:
    """Turn ``k`` or ``density`` into an edge count per scope.

    Args:
        sizes: Number of candidate edges in each scope.
        k: Total edges to keep (split in proportion to ``sizes``), or a mapping from scope
            name to its count.
        density: Fraction of candidates to keep, in ``(0, 1]``.
        names: Scope names, for a mapping ``k`` and for error messages.

    Raises:
        SelectionError: when neither or both of ``k`` and ``density`` are given, or a value
            is out of range.

    Example:
        >>> from graphwire.wiring.topk import resolve_budget
        >>> resolve_budget([100, 300], k=None, density=0.1)
        [10, 30]
    """
    total = sum(sizes)
    if (k is None) == (density is None):
        raise SelectionError(
            f"give exactly one of k (an edge count) and density (a fraction); got k={k!r}, "
            f"density={density!r}. For example density=0.1 keeps 10% of the {total} candidates."
        )
    if density is not None:
        if isinstance(density, bool) or not 0.0 < float(density) <= 1.0:
            raise SelectionError(f"density must be in (0, 1]; got {density!r}.")
        return apportion(round(float(density) * total), sizes)
    if isinstance(k, Mapping):
        names = list(names or [])
        unknown = sorted(set(k) - set(names))
        if unknown or set(k) != set(names):
            raise SelectionError(
                f"k as a mapping needs one count for each scope {names}; got keys {sorted(k)}."
            )
        counts = [int(k[n]) for n in names]
        for n, c, s in zip(names, counts, sizes):
            if not 0 <= c <= s:
                raise SelectionError(f"k[{n!r}]={c} must be in [0, {s}], the scope's candidates.")
        return counts
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= total:
        raise SelectionError(f"k must be an int in [1, {total}] (the candidate edges); got {k!r}.")
    return apportion(k, sizes)


def distribute_budget(
    total: int,
    shapes: Sequence[Sequence[int]],
    distribution: str = "uniform",
    sizes: Sequence[int] | None = None,
) -> list[int]:
    """Split ``total`` kept weights over layers (or node groups) by a named distribution.

    ``"uniform"`` gives every layer the same density (counts in proportion to the sizes).
    ``"erk"`` is the Erdos-Renyi-Kernel distribution of RigL (Evci et al., ICML 2020;
    Erdos-Renyi for ``Linear`` layers, Mocanu et al. 2018): a layer of shape
    ``(n_out, n_in, k_h, k_w)`` gets a density proportional to
    ``(n_out + n_in + k_h + k_w) / (n_out * n_in * k_h * k_w)``, rescaled so the counts sum
    to ``total``; a layer whose density would exceed 1 is kept dense and the rest of the
    budget is spread over the others. ``"global"`` is not a split (one top-k over all
    layers): :func:`~graphwire.layers.sparsify` handles it with one budget.

    Args:
        total: Weights to keep over all layers.
        shapes: The shape of each layer's weight (or ``(n_targets, n_sources)`` of a group).
        distribution: ``"uniform"`` or ``"erk"``.
        sizes: Candidates of each layer, when not the product of its shape (e.g. a grouped
            convolution, or a node group that is not a complete bipartite graph).

    Returns:
        The kept count of each layer, each in ``[0, size]``.

    Raises:
        SelectionError: for an unknown distribution (the valid ones are listed),
            ``"global"``, or a ``total`` above the candidates.

    Example:
        >>> from graphwire.wiring.topk import distribute_budget
        >>> distribute_budget(300, [(10, 10), (100, 100)], "uniform")
        [3, 297]
        >>> distribute_budget(300, [(10, 10), (100, 100)], "erk")  # denser small layer
        [27, 273]
        >>> distribute_budget(1500, [(10, 10), (100, 100)], "erk")  # it would exceed 1
        [100, 1400]
    """
    from graphwire._utils import choose

    choose("distribution", distribution, dict.fromkeys(DISTRIBUTIONS), SelectionError)
    if distribution == "global":
        raise SelectionError(
            "distribution='global' is one top-k over every layer, not a split of the budget; "
            "build one SharedBudget over the modules (sparsify(..., distribution='global'))."
        )
    shapes = [tuple(int(d) for d in shape) for shape in shapes]
    sizes = [math.prod(shape) for shape in shapes] if sizes is None else [int(s) for s in sizes]
    total = int(total)
    if not 0 <= total <= sum(sizes):
        raise SelectionError(
            f"total must be in [0, {sum(sizes)}] (the candidates of all layers); got {total}."
        )
    if distribution == "uniform":
        return apportion(total, sizes)
    raw = [sum(shape) / max(math.prod(shape), 1) for shape in shapes]
    dense: set[int] = set()
    while True:
        rest = total - sum(sizes[i] for i in dense)
        weights = {i: raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense}
        denom = sum(weights.values())
        if denom <= 0:
            break
        eps = rest / denom
        over = {i for i in weights if eps * raw[i] > 1.0}
        if not over:
            break
        dense |= over
    counts = list(sizes)
    others = [i for i in range(len(sizes)) if i not in dense]
    if others:
        rest = total - sum(sizes[i] for i in dense)
        for i, c in zip(others, apportion(rest, [raw[i] * sizes[i] for i in others])):
            counts[i] = min(c, sizes[i])
    return counts
