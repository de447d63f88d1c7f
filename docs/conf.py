"""Sphinx configuration for the ptjaas documentation (MyST Markdown).

Build (warnings are errors, as in CI):  python -m sphinx -W --keep-going -b html docs docs/_build/html
Needs the docs extra:                   pip install -e ".[docs]"
The config reference is generated from the traitlets classes at build time (_ext/ptjaas_configref.py).
"""

import os
import sys

sys.path.insert(0, os.path.abspath("_ext"))

project = "ptjaas"
author = "the ptjaas developers"
copyright = "ptjaas developers"

extensions = ["myst_parser", "ptjaas_configref"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build", "screenshots.py", "_ext"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = "ptjaas"
nitpicky = False
