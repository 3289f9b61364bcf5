"""Export: compiled dense modules for training and inference, and cost counting.

The last stage of graphwire's flow: graph -> wiring rule -> execution -> training ->
**export**.
"""

__all__: list[str] = []
