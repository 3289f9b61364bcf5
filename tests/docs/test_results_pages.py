"""The results pages: ``docs/_ext/gw_results.py`` renders recorded benchmark folders."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _gw_results():
    spec = importlib.util.spec_from_file_location("gw_results", DOCS / "_ext" / "gw_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gw_results"] = module
    spec.loader.exec_module(module)
    return module


def _headings(page: str) -> list[str]:
    return [line[3:] for line in page.splitlines() if line.startswith("## ")]


def test_suite_files_come_before_subfolders_with_results_md_first(tmp_path):
    folder = tmp_path / "small-scale"
    (folder / "epochs-80").mkdir(parents=True)
    # names chosen so that plain path order would interleave the two runs
    for md in ("investigation.md", "results.md", "epochs-80/results.md", "epochs-80/a.md"):
        (folder / md).write_text("# table\n\nrow\n")
    for png in ("accuracy.png", "z_wiring.png", "epochs-80/accuracy.png"):
        (folder / png).write_bytes(b"\x89PNG")

    page = _gw_results().render_suite("small-scale", folder, tmp_path / "assets", "_assets")

    assert _headings(page) == [
        "`results.md`",
        "`investigation.md`",
        "`epochs-80/results.md`",
        "`epochs-80/a.md`",
        "`accuracy.png`",
        "`z_wiring.png`",
        "`epochs-80/accuracy.png`",
    ]
    assert (tmp_path / "assets" / "epochs-80" / "accuracy.png").read_bytes() == b"\x89PNG"
