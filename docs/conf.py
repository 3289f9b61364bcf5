"""Sphinx configuration of graphwire's documentation.

The build runs offline with ``-W --keep-going -n`` (warnings are errors, nitpicky):
every cross-reference must resolve. External projects resolve through the small local
inventories in ``_inventories/`` (see ``_inventories/build.py``); graphwire's own API
pages are generated from each package's ``__all__`` by ``_ext/gw_api.py``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import graphwire  # noqa: E402

project = "graphwire"
author = "The graphwire developers"
copyright = "2026, The graphwire developers"
version = release = graphwire.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
    "gw_api",
    "gw_results",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_inventories", "_templates", "tutorials/*.py", "**/README.md"]
templates_path = ["_templates"]

# --- autodoc / autosummary / napoleon: Google-style docstrings, the project's dialect.
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = False
autodoc_default_options = {"exclude-members": "__init__, __new__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False

# --- MyST: Markdown pages with $...$ / $$...$$ math.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- Cross-references: nitpicky, against local inventories (no network at build time).
nitpicky = True
_INV = HERE / "_inventories"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", str(_INV / "python.inv")),
    "torch": ("https://pytorch.org/docs/stable/", str(_INV / "torch.inv")),
    "torch_geometric": (
        "https://pytorch-geometric.readthedocs.io/en/latest/",
        str(_INV / "torch_geometric.inv"),
    ),
    "networkx": ("https://networkx.org/documentation/stable/", str(_INV / "networkx.inv")),
    "torchdiffeq": (
        "https://github.com/rtqichen/torchdiffeq/blob/master/",
        str(_INV / "torchdiffeq.inv"),
    ),
}
intersphinx_timeout = 1
# Names no inventory can hold, each with the reason it cannot be referenced:
nitpick_ignore = [
    # typing internals appear in rendered signatures of Protocol classes; not documented.
    ("py:class", "typing._ProtocolMeta"),
]

# --- HTML: the furo theme.
html_theme = "furo"
html_title = f"graphwire {release}"
html_static_path = []
