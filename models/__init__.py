"""The paper's networks, built from graphwire's public API, behind one registry.

``create_model(name, **overrides)`` builds a network, ``list_models()`` names them all:
the tiny static / discrete / continuous classifiers, the MobileNetV1-like graphs, sparse
ResNets, a graph RNN and a graph ODE classifier. :mod:`models.baselines` turns any of
them into the paper's comparisons (fine-tune, one-shot lottery ticket).
"""

from models import baselines, mobilenet, ode, resnet, sequence, tiny  # noqa: F401  (registers)
from models.registry import create_model, list_models, model_defaults, register_model

__all__ = ["create_model", "list_models", "register_model", "model_defaults"]
