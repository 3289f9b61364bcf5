"""Export: frozen inference modules (``graphwire.compile``) and cost counting.

The last stage of graphwire's flow: graph -> wiring rule -> execution -> training ->
**export**.
"""

from graphwire.export.compiler import compile
from graphwire.export.counting import COST_KINDS, Cost, CostItem, count

__all__: list[str] = ["compile", "count", "Cost", "CostItem", "COST_KINDS"]
