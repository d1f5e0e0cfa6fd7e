"""Sphinx configuration of raymanager's docs: MyST markdown pages, autodoc for the API.

Build locally (warnings are errors, as in CI)::

    python -m sphinx -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
# Rendering examples and autodoc imports never need a display.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "raymanager"
author = "raymanager contributors"
copyright = "the raymanager contributors"  # the name Sphinx reads

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "results/*.json"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Each directive says :members: itself (a default of True would override a list).
autodoc_default_options = {"show-inheritance": True}

html_theme = "furo"
html_title = "raymanager"
