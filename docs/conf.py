"""Sphinx configuration of llmfbn's documentation (``make docs``).

Offline by construction: a theme installed from PyPI (furo), no intersphinx,
no fonts, scripts or styles from the network. The gallery runs
``tutorials/plot_*.py`` with the test suite's smoke settings unless
``LLMFBN_DOCS_FULL=1`` (``make docs DOCS_FULL=1``). Environment variables:

- ``LLMFBN_DOCS_FULL=1``: the tutorials' full settings (``LLMFBN_SMOKE`` unset;
  ``LLMFBN_DATA`` kept when set, so the tutorials also use the standard
  datasets).
- ``LLMFBN_DOCS_EXAMPLES=REGEX``: execute only the tutorials whose path
  matches (sphinx-gallery's ``filename_pattern``); the others are shown
  without their outputs. ``tests/test_docs.py`` runs one tutorial this way.
- ``LLMFBN_RESULTS``: where the tutorials write (default
  ``docs/_build/tutorial-results``).
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

import llmfbn_docs  # noqa: E402

import llmfbn  # noqa: E402

# -- the tutorials' settings, read by the scripts sphinx-gallery runs in this process --
FULL = os.environ.get("LLMFBN_DOCS_FULL", "") not in ("", "0")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("LLMFBN_RESULTS", str(DOCS / "_build" / "tutorial-results"))
if FULL:
    os.environ.pop("LLMFBN_SMOKE", None)
else:
    os.environ["LLMFBN_SMOKE"] = "1"
    os.environ.pop("LLMFBN_DATA", None)  # as the tests run them: the built-in probe set only

# -- sources written before Sphinx reads anything (docs/_ext/llmfbn_docs.py) --
llmfbn_docs.write_api_pages(DOCS)
llmfbn_docs.write_cli_page(DOCS)
TUTORIALS = llmfbn_docs.stage_tutorials(DOCS, ROOT / "tutorials", DOCS / "gallery_header.rst")

# A gallery made in the other mode is run again, not reused (sphinx-gallery only
# re-runs a script whose source changed). The mode is recorded when a build succeeds.
_MODE = "full" if FULL else "smoke"
_MODE_FILE = DOCS / "auto_examples" / ".llmfbn-mode"
_STALE = _MODE_FILE.is_file() and _MODE_FILE.read_text() != _MODE


def _record_mode(app, exception):
    if exception is None and _MODE_FILE.parent.is_dir():
        _MODE_FILE.write_text(_MODE)


def setup(app):
    app.connect("build-finished", _record_mode)

# -- project --
project = "llmfbn"
author = "the llmfbn team"
copyright = "the llmfbn team, BSD-3-Clause"
release = llmfbn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "llmfbn_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_tutorials", "gallery_header.rst", "Thumbs.db", ".DS_Store",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.json", "auto_examples/*.md5"]
default_role = "literal"
suppress_warnings = []

# -- API pages --
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
add_module_names = True

# -- user guide (MyST) --
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# -- gallery --
sphinx_gallery_conf = {
    "examples_dirs": str(TUTORIALS.relative_to(DOCS)),
    "gallery_dirs": "auto_examples",
    "filename_pattern": os.environ.get("LLMFBN_DOCS_EXAMPLES") or r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "run_stale_examples": _STALE,
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "doc_module": ("llmfbn",),
    "backreferences_dir": f"{llmfbn_docs.GENERATED}/backreferences",
    "reference_url": {"llmfbn": None},
    "show_memory": False,
    "show_signature": False,
    "write_computation_times": False,  # its page loads jQuery and DataTables from CDNs
}

# -- HTML --
html_theme = "furo"
html_title = f"llmfbn {release}"
html_static_path = []
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {"navigation_with_keys": True}
# No search index fetched from anywhere, no analytics: furo ships everything it uses.
