"""Temporary home of the native kernels' Python side (moving to :mod:`graphwire.export`)."""

__all__: list[str] = []
