"""Command-line entry of the benchmark suites: ``python -m benchmarks SUITE``."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen suite."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suite", choices=["demo"], help="the suite to run")
    args = parser.parse_args(argv)
    if args.suite == "demo":
        script = Path(__file__).resolve().parent.parent / "docs" / "tutorials" / "quickstart.py"
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
