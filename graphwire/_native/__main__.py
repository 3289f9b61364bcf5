"""``python -m graphwire._native``: which kernel variants this CPU runs, and which loads.

``--runnable`` prints the variants this CPU executes, space-separated, most portable
first (the Makefile runs the test suite once per variant); ``scalar`` alone where the
scalar library cannot be built to ask (the kernels then fall back to torch anyway).
Without arguments it loads the kernels as a kernel call would and says what loaded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from graphwire import _native


def main(argv: list[str] | None = None) -> int:
    """Print the runnable variants (``--runnable``) or what loads; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m graphwire._native", description=__doc__)
    parser.add_argument(
        "--runnable", action="store_true", help="print the variants this CPU executes"
    )
    args = parser.parse_args(argv)
    if args.runnable:
        try:
            variants = _native.runnable()
        except (OSError, subprocess.SubprocessError) as err:
            print(f"cannot ask the scalar library ({err}); assuming scalar", file=sys.stderr)
            variants = ("scalar",)
        print(" ".join(variants))
        return 0
    setting = os.environ.get(_native.ENV_VAR, "")
    print(f"{_native.ENV_VAR}={setting!r}: loaded {_native.loaded_variant() or 'no kernels'}")
    print(f"runnable here: {' '.join(_native.runnable())}")
    print(f"cache: {_native._cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
