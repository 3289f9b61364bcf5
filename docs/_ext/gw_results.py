"""Sphinx extension: results pages from the recorded benchmark runs.

At ``config-inited`` it reads ``benchmarks/results/<suite>/`` (written by
``python -m benchmarks <suite>``) and writes ``docs/results/<suite>.md``: the suite's
description (its module docstring), the machine the run was recorded on (the ``machine``
record of ``results.json``), every ``*.md`` table the run wrote (headings shifted under
the page title, image links redirected), and every plot (``*.png``, ``*.svg``), copied next
to the page. ``docs/results/index.md`` lists the suites found, in the order of
``benchmarks.SUITES``. Nothing here runs a benchmark: the pages show what was recorded.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

IMAGES = (".png", ".svg", ".jpg")


def _suite_order(root: Path) -> list[str]:
    try:
        suites = list(importlib.import_module("benchmarks.__main__").SUITES)
    except ImportError:
        suites = []
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [s for s in suites if s in found] + [s for s in found if s not in suites]


def _describe(suite: str) -> str:
    try:
        doc = importlib.import_module(f"benchmarks.{suite.replace('-', '_')}").__doc__ or ""
    except ImportError:
        return ""
    return doc.strip().split("\n\n")[0]


def _machine_lines(folder: Path) -> list[str]:
    lines = []
    for path in sorted(folder.rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        machine = record.get("machine") if isinstance(record, dict) else None
        if isinstance(machine, dict) and machine:
            where = path.relative_to(folder).as_posix()
            facts = ", ".join(f"{k}: {v}" for k, v in machine.items() if v not in (None, ""))
            lines.append(f"- `{where}`: {facts}")
    return lines


def _shift_headings(text: str, levels: int) -> str:
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _page_order(folder: Path):
    """Sort key: files of ``folder`` itself before subfolders', ``results.md`` first."""

    def key(path: Path) -> tuple[bool, bool, str]:
        rel = path.relative_to(folder)
        return len(rel.parts) > 1, path.name != "results.md", rel.as_posix()

    return key


def render_suite(suite: str, folder: Path, assets: Path, rel_assets: str) -> str:
    """The Markdown page of one suite's recorded results; copies its plots to ``assets``."""
    lines = [f"# {suite}", ""]
    description = _describe(suite)
    if description:
        lines += [description, ""]
    lines += [
        f"Recorded by `python -m benchmarks {suite}` into `benchmarks/results/{suite}/`.",
        "",
    ]
    machine = _machine_lines(folder)
    lines += ["**Machine:**", "", *(machine or ["- not recorded with the run"]), ""]
    images = sorted((p for p in folder.rglob("*") if p.suffix in IMAGES), key=_page_order(folder))
    for image in images:
        target = assets / image.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != image.read_bytes():
            shutil.copyfile(image, target)
    shown: set[str] = set()
    # the suite's own table first, then notes beside it (an investigation, ...), then
    # further recorded runs in subfolders
    tables = sorted(folder.rglob("*.md"), key=_page_order(folder))
    for table in tables:
        text = table.read_text()
        where = table.parent.relative_to(folder).as_posix()
        prefix = rel_assets + ("" if where == "." else f"/{where}")

        def link(match: re.Match, prefix: str = prefix) -> str:
            name = match.group(2)
            if "://" in name or name.startswith("/"):
                return match.group(0)
            shown.add(f"{prefix}/{name}")
            return f"{match.group(1)}({prefix}/{name})"

        text = re.sub(r"(!\[[^\]]*\])\(([^)\s]+)\)", link, text)
        title = table.relative_to(folder).as_posix()
        lines += [f"## `{title}`", "", _shift_headings(text, 2), ""]
    for image in images:
        rel = f"{rel_assets}/{image.relative_to(folder).as_posix()}"
        if rel not in shown:
            lines += [
                f"## `{image.relative_to(folder).as_posix()}`",
                "",
                f"![{image.stem}]({rel})",
                "",
            ]
    return "\n".join(lines)


INTRO = """# Results

Tables and plots from recorded benchmark runs, one page per suite. Every page names the
machine its numbers were measured on; numbers from different machines are not comparable.
The pages are generated at build time from `benchmarks/results/<suite>/`; to add or
refresh one, run the suite ({doc}`suites` lists them with their options) and rebuild
the docs.

"""

PAPER = """
## The paper's numbers, for reference

From *Discovering Neural Wirings* (NeurIPS 2019), CIFAR-10 tiny classifiers (41k
parameters, k = 32,000 of 640,000 candidate edges; mean ± std over 5 runs):

| CIFAR-10 | random graph | DNW |
|---|---|---|
| static | 76.1 ± 0.5 | 80.9 ± 0.6 |
| discrete time | 77.3 ± 0.7 | 82.3 ± 0.6 |
| continuous time | 78.5 ± 1.2 | 83.1 ± 0.3 |

MobileNetV1-like graphs on ImageNet (top-1):

| ImageNet | params | multiply-adds | top-1 |
|---|---|---|---|
| MobileNetV1 x0.25 | 0.5M | 41M | 50.6 |
| Random graph x0.225 | 1.2M | 55.7M | 53.3 |
| DNW-Small x0.15 | 0.24M | 22.1M | 50.3 |
| DNW-Small x0.225 | 0.4M | 41.2M | 59.9 |
| DNW x0.225 | 1.1M | 42.1M | 60.9 |
| DNW x0.3 | 1.3M | 66.7M | 65.0 |
| Random graph x0.49 | 1.8M | 170M | 64.1 |
| DNW x0.49 | 1.8M | 154M | 70.4 |
"""


def render_suites() -> str:
    """The benchmark CLI reference: every suite of ``benchmarks.SUITES`` with its options."""
    import argparse

    lines = [
        "# The benchmark suites",
        "",
        "`python -m benchmarks SUITE [options]` runs one suite; each suite is a module of",
        "`benchmarks/` with `add_arguments(parser)` and `run(args)`. Prefix the command with",
        "`torchrun --nproc_per_node=N` to train on several processes. This page is generated",
        "from the suites' own argument parsers.",
        "",
    ]
    try:
        suites = importlib.import_module("benchmarks.__main__").SUITES
    except ImportError:
        return "\n".join([*lines, "The benchmarks package is not importable.", ""])
    for name, module_name in suites.items():
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(
            prog=f"python -m benchmarks {name}",
            formatter_class=lambda prog: argparse.HelpFormatter(prog, width=88),
        )
        module.add_arguments(parser)
        doc = (module.__doc__ or "").strip()
        lines += [f"## `{name}`", "", doc, "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def write_results(srcdir: Path, results_root: Path) -> list[str]:
    """Write ``results/index.md`` and one page per recorded suite; return the suites."""
    out = srcdir / "results"
    out.mkdir(parents=True, exist_ok=True)
    suites = _suite_order(results_root)
    pages = {}
    for suite in suites:
        pages[f"{suite}.md"] = render_suite(
            suite, results_root / suite, out / f"_{suite}_files", f"_{suite}_files"
        )
    pages["suites.md"] = render_suites()
    toc = ["```{toctree}", ":maxdepth: 1", "", "suites", *suites, "```", ""]
    none = "No benchmark run has been recorded in this checkout yet.\n\n"
    pages["index.md"] = INTRO + "\n".join(toc) + ("" if suites else none) + PAPER
    for name, text in pages.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for stale in out.glob("*.md"):
        if stale.name not in pages:
            stale.unlink()
    return suites


def _on_config_inited(app, config) -> None:
    src = Path(app.srcdir)
    write_results(src, src.parent / "benchmarks" / "results")


def setup(app) -> dict[str, Any]:
    """Register the hook with Sphinx."""
    app.connect("config-inited", _on_config_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
