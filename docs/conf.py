"""Sphinx configuration of graphwire's documentation."""

project = "graphwire"
author = "The graphwire developers"
copyright = "2026, The graphwire developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]
autosummary_generate = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "description"
html_theme = "furo"
intersphinx_mapping = {}
exclude_patterns = ["_build"]
