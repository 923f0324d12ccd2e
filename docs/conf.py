"""Sphinx configuration: MyST pages, numpydoc docstrings, the tutorial notebook executed at build time.

    python -m sphinx -W -n --keep-going -b html docs docs/_build/html     (pip install -e ".[docs]")
"""

from __future__ import annotations

from cai_edge import __version__

project = "cai-edge"
author = "the cai-edge developers"
copyright = "2026, the cai-edge developers"
release = version = __version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "numpydoc"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# The tutorial runs on every build: a docs build that cannot run it fails.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True

# Signatures without annotations (their types are in the numpydoc Parameters sections), members in source order.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
# Every documented object must document each of its parameters (PR01: a parameter left out, PR02: one
# that does not exist); with -W a missing one fails the build.
numpydoc_validation_checks = {"PR01", "PR02"}
numpydoc_validation_exclude = {r"\.__init__$", r"^cai_edge\.errors\.\w+\.with_traceback$", r"\.add_note$"}

# Nitpicky (-n): every cross-reference to cai-edge must resolve. The build runs offline, without
# intersphinx inventories, so references to Python, numpy and astropy objects are left as text.
nitpick_ignore_regex = [
    (r"py:(class|exc|obj|func|meth|data)", r"(builtins\.)?(ValueError|TypeError|OSError|KeyError|RuntimeError|Exception|"
                                           r"FileNotFoundError|PermissionError|str|int|float|bool|list|dict|tuple|None|"
                                           r"object|bytes|Path|PathLike)"),
    (r"py:(class|obj|func|meth)", r"(numpy|np|astropy|os|pathlib|typing|qp|collections|onnxruntime)(\..*)?"),
]

html_theme = "pydata_sphinx_theme"
html_title = f"cai-edge {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2, "secondary_sidebar_items": ["page-toc"]}
html_sidebars = {"**": []}  # pages are short: the page's own contents sit on the right
html_static_path: list[str] = []
html_show_sourcelink = False

