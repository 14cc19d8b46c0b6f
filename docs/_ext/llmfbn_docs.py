"""Sources the documentation build writes itself: API pages, the CLI page, the gallery folder.

Run by ``docs/conf.py`` before Sphinx reads anything, so that autosummary and
sphinx-gallery find their inputs:

- :func:`write_api_pages` writes ``docs/api/``: one page per public module of
  llmfbn (a subpackage, or a public module such as ``llmfbn.grid``), listing
  every name of its ``__all__`` under Classes, Exceptions and warnings,
  Functions and Constants, as nilearn's reference does, plus the top-level
  ``llmfbn.__all__``; autosummary then generates one page per name in
  ``docs/generated/``. A name added to an ``__all__`` gets its page without
  anyone editing the docs; a new public subpackage gets its page too (it is
  found by :func:`public_modules`, and put after the known ones).
- :func:`write_cli_page` writes ``docs/api/cli_commands.rst``: every
  ``llmfbn`` command's ``--help``, from the parser itself.
- :func:`stage_tutorials` builds ``docs/_tutorials/``: copies of
  ``tutorials/plot_*.py`` beside the gallery's header (sphinx-gallery needs a
  header file inside the examples folder; the tutorials folder stays as
  users see it).

The extension part (:func:`setup`) reads ``|r|`` in a docstring as the
absolute value it means in plain text (:func:`escape_bars`), and checks at the
end of a build that every public name has a generated page, failing the build
(a warning, an error under ``-W``) naming the missing ones.
"""

import argparse
import importlib
import inspect
import os
import pkgutil
import re
import shutil
from pathlib import Path

from sphinx.domains.python import PythonDomain
from sphinx.util import logging

#: Public modules in the order of the pipeline (STYLE.md); others follow, sorted.
MODULE_ORDER = ("llmfbn", "llmfbn.grid", "llmfbn.models", "llmfbn.hooks", "llmfbn.recording",
                "llmfbn.networks", "llmfbn.glm", "llmfbn.intervention", "llmfbn.evaluation",
                "llmfbn.pruning", "llmfbn.fingerprint", "llmfbn.plotting", "llmfbn.reports",
                "llmfbn.datasets", "llmfbn.io", "llmfbn.cluster", "llmfbn.cli")

#: Sections of a module page, in order: (title, autosummary template).
KINDS = (("Classes", "autosummary/class.rst"), ("Exceptions and warnings", "autosummary/class.rst"),
         ("Functions", "autosummary/function.rst"), ("Constants", "autosummary/data.rst"))

GENERATED = "generated"  # autosummary's folder, relative to docs/

_HEADER = ".. This file is written by docs/_ext/llmfbn_docs.py at every build; do not edit.\n\n"


def public_modules(package="llmfbn"):
    """Every public module of ``package`` that declares ``__all__``, with its names.

    Returns
    -------
    modules : list of (str, list of str)
        ``(module name, names in its __all__)``: the package itself first, then
        its public submodules (no leading underscore) in :data:`MODULE_ORDER`,
        then any other in alphabetical order.
    """
    root = importlib.import_module(package)
    names = [package] + sorted(
        f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__)
        if not info.name.startswith("_"))
    found = []
    for name in names:
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            found.append((name, list(module.__all__)))
    rank = {name: i for i, name in enumerate(MODULE_ORDER)}
    return sorted(found, key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def kind_of(obj):
    """The section of a module page an object belongs to (a title of :data:`KINDS`)."""
    if inspect.isclass(obj):
        if issubclass(obj, (BaseException, Warning)):
            return "Exceptions and warnings"
        return "Classes"
    if callable(obj):
        return "Functions"
    return "Constants"


def _summary(module):
    """The first paragraph of a module's docstring, on one line."""
    if module == "llmfbn":
        return "The names ``import llmfbn`` gives: the grid, loading, recording."
    doc = inspect.getdoc(importlib.import_module(module)) or ""
    return escape_bars(" ".join(doc.split("\n\n")[0].split()))


def _module_page(module, names):
    obj = importlib.import_module(module)
    by_kind = {title: [] for title, _ in KINDS}
    for name in names:
        by_kind[kind_of(getattr(obj, name))].append(name)
    title = "``llmfbn``: the top-level names" if module == "llmfbn" else f"``{module}``"
    lines = [_HEADER, f".. _api-{module}:", "", title, "=" * len(title), "",
             f".. automodule:: {module}", "   :no-members:", "   :no-inherited-members:", "",
             f".. currentmodule:: {module}", ""]
    if module == "llmfbn":
        lines += ["The names below are also importable from the subpackages that define "
                  "them; ``llmfbn`` imports them lazily, on first use.", ""]
    for title, template in KINDS:
        if not by_kind[title]:
            continue
        lines += [title, "-" * len(title), "", ".. autosummary::", f"   :toctree: ../{GENERATED}/",
                  f"   :template: {template}", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in sorted(by_kind[title], key=str.lower)] + [""]
    return "\n".join(lines)


def _index_page(modules):
    lines = [_HEADER, ".. _api:", "", "API reference", "=============", "",
             "Every public name of llmfbn, grouped by subpackage, with its docstring. Import "
             "names from the subpackage that lists them (``from llmfbn.networks import "
             "NetworkDecomposition``), as in nilearn.", "",
             "The command line is documented in :doc:`cli_commands`.", "",
             ".. list-table::", "   :widths: 30 70", ""]
    for name, _ in modules:
        lines += [f"   * - :doc:`{name}`", f"     - {_summary(name)}"]
    lines += ["   * - :doc:`cli_commands`", "     - The ``llmfbn`` commands and their options.",
              "", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {name}" for name, _ in modules] + ["   cli_commands", ""]
    return "\n".join(lines)


def _write_if_changed(path, text):
    """Write ``text`` to ``path`` only when it differs, so Sphinx rereads only what changed."""
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_api_pages(docs_dir, modules=None):
    """Write ``docs_dir/api/index.rst`` and one page per public module.

    Parameters
    ----------
    docs_dir : str or Path
        The Sphinx source folder (holds ``conf.py``).
    modules : list of (str, list of str), optional
        As :func:`public_modules` returns (its result by default).

    Returns
    -------
    pages : list of Path
        The module pages written (or already up to date), index first.
    """
    modules = public_modules() if modules is None else modules
    api = Path(docs_dir) / "api"
    api.mkdir(exist_ok=True)
    pages = [api / "index.rst"]
    _write_if_changed(pages[0], _index_page(modules))
    for module, names in modules:
        pages.append(api / f"{module}.rst")
        _write_if_changed(pages[-1], _module_page(module, names))
    keep = {p.name for p in pages} | {"cli_commands.rst"}
    for stale in api.glob("*.rst"):
        if stale.name not in keep:
            stale.unlink()
    return pages


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def write_cli_page(docs_dir):
    """Write ``docs_dir/api/cli_commands.rst``: ``llmfbn --help`` and each command's help."""
    from llmfbn.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal; pages must not depend on it
    try:
        parser = build_parser()
        blocks = [("llmfbn", parser.format_help())]
        blocks += [(f"llmfbn {name}", sub.format_help())
                   for name, sub in _subcommands(parser).items()]
    finally:
        if columns is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = columns
    lines = [_HEADER, ".. _cli:", "", "Command line", "============", "",
             "Every ``llmfbn`` command with its options, as ``llmfbn COMMAND --help`` prints "
             "them. Bad input ends with one line ``llmfbn: error: ...`` and exit status 2, "
             "before any model loads when the check is cheap.", ""]
    for title, text in blocks:
        lines += [f"``{title}``", "-" * (len(title) + 4), "", ".. code-block:: text", ""]
        lines += [f"   {line}".rstrip() for line in text.rstrip().splitlines()] + [""]
    api = Path(docs_dir) / "api"
    api.mkdir(exist_ok=True)
    _write_if_changed(api / "cli_commands.rst", "\n".join(lines))


def stage_tutorials(docs_dir, tutorials_dir, header):
    """Make ``docs_dir/_tutorials``: copies of the tutorials and the gallery header.

    Copies, not links: sphinx-gallery resolves paths and wants every example
    inside its examples folder. A copy is rewritten only when its tutorial
    changed, so sphinx-gallery reruns only what changed.

    Parameters
    ----------
    docs_dir, tutorials_dir : str or Path
        The Sphinx source folder and the repository's ``tutorials/``.
    header : str or Path
        The gallery's header (rst), copied as ``GALLERY_HEADER.rst``.

    Returns
    -------
    staged : Path
        The folder to give sphinx-gallery as ``examples_dirs``.
    """
    staged = Path(docs_dir) / "_tutorials"
    staged.mkdir(exist_ok=True)
    scripts = sorted(Path(tutorials_dir).glob("plot_*.py"))
    if not scripts:
        raise FileNotFoundError(f"No tutorials/plot_*.py in {tutorials_dir}.")
    wanted = {p.name for p in scripts} | {"GALLERY_HEADER.rst"}
    for entry in staged.iterdir():
        if entry.name not in wanted:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for script in scripts:
        _write_if_changed(staged / script.name, script.read_text(encoding="utf-8"))
    _write_if_changed(staged / "GALLERY_HEADER.rst", Path(header).read_text(encoding="utf-8"))
    return staged


def missing_pages(out_dir, modules):
    """Public names without a generated HTML page in ``out_dir``.

    Returns
    -------
    missing : list of str
        ``module.name`` for each name of ``modules`` whose
        ``generated/module.name.html`` does not exist.
    """
    out = Path(out_dir) / GENERATED
    return [f"{module}.{name}" for module, names in modules for name in names
            if not (out / f"{module}.{name}.html").is_file()]


#: ``|x|`` outside a literal: docutils would read a substitution, the docstring means |x|.
_BARS = re.compile(r"(?<![\w|\\`])\|(?=[^\s|])([^|`\n]*?[^\s|\\])\|(?![\w|`])")
_LITERAL = re.compile(r"(``.*?``)")


def escape_bars(line):
    """``line`` with ``|x|`` (an absolute value in a docstring) escaped as ``\\|x\\|``.

    Double-backquoted literals are left as they are; so are rst tables, whose
    bars stand beside spaces.
    """
    parts = _LITERAL.split(line)
    return "".join(part if i % 2 else _BARS.sub(r"\\|\1\\|", part)
                   for i, part in enumerate(parts))


def _escape_docstring(app, what, name, obj, options, lines):
    lines[:] = [escape_bars(line) for line in lines]


def _escape_gallery_prose(app, docname, source):
    """The tutorials' prose cells say ``|x|`` too; their code (indented) is left alone."""
    if docname.startswith("auto_examples/"):
        source[0] = "\n".join(line if line[:1].isspace() else escape_bars(line)
                               for line in source[0].split("\n"))


class _PythonDomain(PythonDomain):
    """The Python domain, noting a re-exported class's canonical name once.

    A class listed by two subpackages (``llmfbn.io.RecordingLayout`` and
    ``llmfbn.recording.RecordingLayout``) gets a page under each name; autodoc
    gives both the same ``:canonical:`` name, which Sphinx would report as a
    duplicate description. The first page keeps it.
    """

    def note_object(self, name, objtype, node_id, aliased=False, location=None):
        other = self.objects.get(name)
        if aliased and other is not None and other.aliased:
            return
        super().note_object(name, objtype, node_id, aliased=aliased, location=location)


def _check_pages(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    missing = missing_pages(app.outdir, public_modules())
    if missing:
        logging.getLogger(__name__).warning(
            "%d public names have no API page: %s", len(missing), ", ".join(missing))


def setup(app):
    app.add_domain(_PythonDomain, override=True)
    app.connect("autodoc-process-docstring", _escape_docstring, priority=400)
    app.connect("source-read", _escape_gallery_prose)
    app.connect("build-finished", _check_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
