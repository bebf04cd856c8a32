"""Sphinx configuration of the sk_dualhead documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html``; the
examples in ``examples/`` run during the build (sphinx-gallery).
"""

import os
import sys

import torch

# The package is imported from the source tree, whether or not it is installed.
sys.path.insert(0, os.path.abspath(".."))

import sk_dualhead  # noqa: E402

# The examples train small networks, for which one thread is fastest.
torch.set_num_threads(1)

project = "sk_dualhead"
author = "sk_dualhead developers"
copyright = "2026, sk_dualhead developers"
version = release = sk_dualhead.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

autosummary_generate = True
# Members are listed by the autosummary class template, not by numpydoc.
numpydoc_show_class_members = False

# The benchmark pages are Markdown written by the benchmark scripts; their
# heading levels and cross-links are not ours to police in the docs build.
suppress_warnings = ["myst.header", "myst.xref_missing"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"sk_dualhead {version}"
html_theme_options = {
    "github_url": None,
    "navigation_with_keys": False,
}
