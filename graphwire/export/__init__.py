"""Export: frozen inference modules (``graphwire.compile``).

The last stage of graphwire's flow: graph -> wiring rule -> execution -> training ->
**export**. Cost counting (``graphwire.count``) lives in :mod:`graphwire.cost`.
"""

from graphwire.export.compiler import compile, freeze_layer

__all__: list[str] = ["compile", "freeze_layer"]
