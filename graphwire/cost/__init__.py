"""Honest cost counting: the parameters and multiply-adds of the structure a network uses.

A DNW network holds every *candidate* edge as a parameter, so ``sum(p.numel())`` says
little about it. :func:`graphwire.count` runs the network once on a random input of the given
shape (batch size 1, evaluation mode, no gradients) and counts only what is live. The
convention generalises the paper's accounting of its MobileNetV1-like graphs:

- **edges** (``kind="edges"``): a selected edge of a :class:`~graphwire.WiredGraph` costs
  one parameter, and one multiply-add per element of the features it carries (``H x W``
  for image nodes, 1 for vector nodes) each time it is used: once in ``mode="dag"``,
  ``steps`` times in ``mode="discrete"``, and once per function evaluation in
  ``mode="continuous"`` (the count of evaluations is measured on the random input, so it
  depends on it for adaptive solvers). A selected weight of a wired layer
  (:class:`~graphwire.layers.WiredConv2d`, ...) costs one parameter and one
  multiply-add per output position, and so does a nonzero weight of a frozen sparse
  layer of a frozen model (:class:`~graphwire.export.SparseLinear`,
  :class:`~graphwire.export.SparseConv2d`, ...). A frozen layer that runs dense is an
  ordinary dense layer and counts all its (compacted) entries, zeros included: for a
  frozen model ``count`` reports what it computes.
- **nodes** (``kind="nodes"``): a node's operation counts only while the node is *used*:
  it has an outgoing selected edge, or it is an output node that is fed (an input node,
  or one with an incoming selected edge). A depthwise ``k x k`` node costs ``k^2``
  parameters and ``k^2`` multiply-adds per output position; a node bias one parameter.
- **dense** (``kind="dense"``): ordinary ``Conv`` and ``Linear`` layers cost their weights
  (and biases) and one multiply-add per weight and output position. A dense layer that
  feeds a wired graph (only channel-wise modules such as norms, activations, pooling and
  ``Flatten`` in between, and as many output channels as the graph has inputs) counts
  only the channels of input nodes that are used: the paper's "first conv counts only
  input nodes still alive". A dense layer fed by a wired graph likewise counts only the
  channels of output nodes that are fed: "the classifier only inputs still connected".
  Only ``nn.Module`` links are followed; a functional op in between ends the chain and
  the layer is counted in full.
- **norm** (``kind="norm"``): affine parameters of batch, instance, layer and group norms.
  They cost no multiply-adds and are reported in :attr:`Cost.norm_params` but *not* in
  :attr:`Cost.params`, as in the paper's figures (batch norm folds into the adjacent
  convolution at inference).

Activations, pooling and additions cost nothing. Every figure is per example. Other
module types are costed by rules passed to one call, ``count(..., costs={Type: fn})``
(node operations by ``node_costs={OpType: fn}``), or by a ``graphwire_cost(self, inputs,
output)`` method of the module type; there is no global registry, so a rule passed to
one call does not change another. A module with parameters that no rule covers raises
:class:`~graphwire.GraphError`.
"""

from graphwire.cost._result import Cost

__all__ = ["Cost"]
