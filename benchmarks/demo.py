"""The main job: train a small wired network and show the edges that swapped."""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent.parent / "docs" / "tutorials" / "quickstart.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This suite takes no options yet."""


def run(args: argparse.Namespace) -> int:
    """Run the quick-start tutorial as the demo."""
    runpy.run_path(str(QUICKSTART), run_name="__main__")
    return 0
