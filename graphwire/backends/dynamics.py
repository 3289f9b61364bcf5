"""The one continuous-time helper: solver options and the integration every path uses.

The reference backend, the dense backend and the frozen graph all integrate
``dZ/dt = f(A Z)`` through :func:`integrate`, with the options of one
:class:`ODESolver`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from graphwire.errors import ConfigError

__all__ = ["ODESolver", "integrate"]

# Method names kept locally: torchdiffeq's registry is private.
#: torchdiffeq's adaptive-step methods (error control by ``rtol`` / ``atol``).
ADAPTIVE_METHODS = ("adaptive_heun", "bosh3", "dopri5", "dopri8", "fehlberg2")
#: torchdiffeq's fixed-grid methods (``options={"step_size": ...}``) and the SciPy bridge.
FIXED_METHODS = (
    "euler",
    "explicit_adams",
    "fixed_adams",
    "heun2",
    "heun3",
    "implicit_adams",
    "midpoint",
    "rk4",
    "scipy_solver",
)
_METHODS = dict.fromkeys(ADAPTIVE_METHODS + FIXED_METHODS)


@dataclass
class ODESolver:
    """Options of the continuous-time mode, passed to :func:`torchdiffeq.odeint`.

    Args:
        method: A torchdiffeq method name (``"dopri5"``, ``"rk4"``, ``"euler"``, ...; see
            the adaptive ``"adaptive_heun"``, ``"bosh3"``, ``"dopri5"``, ``"dopri8"``,
            ``"fehlberg2"`` and the fixed-grid ones).
        rtol: Relative tolerance of adaptive methods.
        atol: Absolute tolerance of adaptive methods.
        t1: End time; the network integrates over ``[0, t1]``.
        adjoint: Backpropagate with the adjoint method (:func:`torchdiffeq.odeint_adjoint`)
            in constant memory instead of through the solver's steps.
        options: Extra solver options (e.g. ``{"step_size": 0.1}`` for fixed-step methods);
            ``None`` means none. The solver keeps its own copy.

    Example:
        >>> from graphwire import ODESolver
        >>> ODESolver(method="rk4", options={"step_size": 0.25}).adaptive
        False
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    t1: float = 1.0
    adjoint: bool = False
    options: dict[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.options = dict(self.options or {})
        if self.method not in _METHODS:
            valid = ", ".join(repr(m) for m in sorted(_METHODS))
            raise ConfigError(f"method={self.method!r} is not known; expected one of {valid}.")
        if not self.t1 > 0:
            raise ConfigError(f"ODESolver t1 must be positive; got {self.t1!r}.")

    @property
    def adaptive(self) -> bool:
        """Whether the method adapts its step size (and so its function evaluations)."""
        return self.method in ADAPTIVE_METHODS

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`torchdiffeq.odeint`."""
        kw = asdict(self)
        del kw["t1"], kw["adjoint"]
        return kw


def integrate(
    func: Callable[[Tensor, Tensor], Tensor],
    z0: Tensor,
    solver: ODESolver,
    *,
    adjoint_params: Sequence[Tensor] = (),
    options: dict[str, Any] | None = None,
) -> Tensor:
    """``Z(t1)`` for ``dZ/dt = func(t, Z)``, ``Z(0) = z0``, by ``solver``.

    Args:
        func: The dynamics.
        z0: The initial state.
        solver: The options; with ``solver.adjoint`` the adjoint method is used and
            ``adjoint_params`` are the tensors it differentiates.
        adjoint_params: Tensors the dynamics depend on (adjoint method only).
        options: Replaces ``solver.options`` (e.g. with a norm of the caller's).

    Returns:
        The state at ``t1``, shaped like ``z0``.
    """
    from torchdiffeq import odeint, odeint_adjoint

    kwargs = solver.as_kwargs()
    if options is not None:
        kwargs["options"] = options
    t = torch.tensor([0.0, solver.t1], dtype=z0.dtype, device=z0.device)
    if solver.adjoint:
        params = tuple(p for p in adjoint_params if p.requires_grad)
        return odeint_adjoint(func, z0, t, adjoint_params=params, **kwargs)[-1]
    return odeint(func, z0, t, **kwargs)[-1]


def held_dynamics(step: Callable[[Tensor], Tensor], nu: int, counter: Any = None):
    """``dZ/dt`` for a state ``[B, n_u + n_h, *F]`` whose last ``n_h`` nodes are held.

    ``step(z_u)`` gives the updated nodes' derivative; held nodes' derivative is zero.
    ``counter.nfe`` (when given) is incremented at every evaluation.
    """

    def dynamics(t: Tensor, z: Tensor) -> Tensor:
        if counter is not None:
            counter.nfe += 1
        dz = step(z[:, :nu])  # [B, n_u, *F]
        if z.shape[1] > nu:
            dz = torch.cat([dz, torch.zeros_like(z[:, nu:])], dim=1)
        return dz

    return dynamics


class ScaledRMS:
    """RMS norm over a state whose dropped entries are identically zero.

    Keeps an adaptive solver's error control exactly as over the full state: the
    dropped entries contribute zero to the sum but count in the mean.

    Args:
        full_over_kept: Entries of the full state per entry of the kept one.
    """

    def __init__(self, full_over_kept: float) -> None:
        self.full_over_kept = full_over_kept

    def __call__(self, x: Tensor) -> Tensor:  # noqa: D102
        return (x.abs().pow(2).sum() / (x.numel() * self.full_over_kept)).sqrt()
