"""The training backends of :class:`~graphwire.WiredGraph`: its graph as tensor operations.

The third room of graphwire's flow (graph -> wiring rule -> **execution** -> training ->
export), below :mod:`graphwire.execution`. A wired graph hands its backend a plain
description of itself at each call (:class:`~graphwire.backends.spec.WiredSpec`); the
backend turns it into tensor operations:

- :mod:`~graphwire.backends.dense`: the default, the graph's edge weights scattered into
  a few dense blocks per call and mixed by matrix products;
- :mod:`~graphwire.backends.reference`: message passing over ``edge_index``, the oracle
  the dense backend is tested against;
- :mod:`~graphwire.backends.layout`: where every node sits in the blocks (shared with
  the frozen graph of :func:`graphwire.freeze`);
- :mod:`~graphwire.backends.run`: the stage walk, the recurrent state and the time loop,
  written once for the dense backend and the frozen graph;
- :mod:`~graphwire.backends.dynamics`: the continuous-time solver options
  (:class:`~graphwire.ODESolver`) and the one integration.

Nothing here is meant to be called directly: pick a backend with
``WiredGraph(..., backend=...)``. The package's public API is empty on purpose.
"""

__all__: list[str] = []
