"""Command-line entry of the benchmark suites: ``python -m benchmarks SUITE [options]``.

Each suite is a module of this package with ``add_arguments(parser)`` and
``run(args) -> int``; :data:`SUITES` maps suite names to those modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Suite name -> module implementing it.
SUITES: dict[str, str] = {
    "demo": "benchmarks.demo",
    "small-scale": "benchmarks.small_scale",
    "alternatives": "benchmarks.alternatives",
    "mobilenet": "benchmarks.mobilenet",
    "sparse": "benchmarks.sparse",
    "smoke": "benchmarks.smoke",
    "speed": "benchmarks.speed",
    "rules": "benchmarks.rules",
    "sparsified": "benchmarks.sparsified",
    "sparse-training": "benchmarks.sparse_training",
    "fan-in": "benchmarks.fan_in",
    "gpu-check": "benchmarks.gpu_check",
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen suite."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, module_name in SUITES.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0].replace("%", "%%")
        module.add_arguments(sub.add_parser(name, help=summary, description=module.__doc__))
    args = parser.parse_args(argv)
    return int(importlib.import_module(SUITES[args.suite]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
