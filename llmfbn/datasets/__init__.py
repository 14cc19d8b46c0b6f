"""Dataset loaders returning :class:`sklearn.utils.Bunch` objects, as nilearn's do.

Nothing is ever downloaded.

- :func:`load_probe_texts` and :func:`load_probe_heldout` read the team's
  small built-in texts, shipped inside the package.
- :func:`load_atlas` reads a network atlas shipped inside the package (the
  default model's ICASSO-stable networks on WikiText-2) or an atlas folder.
- The standard datasets (WikiText-2, SST-2, PIQA, ARC, OpenBookQA,
  WinoGrande, BoolQ) are read from a local folder laid out like
  ``<folder>/sst2/train.tsv``: the ``data_dir`` argument, else the
  environment variable ``LLMFBN_DATA`` (see :func:`get_data_dir`), or from
  an explicit file given as ``path``. Multiple-choice sets are parsed here
  (``llmfbn.datasets._tasks``, re-exported by :mod:`llmfbn.evaluation` as
  :func:`~llmfbn.evaluation.load_task`) and come back as lists of
  :class:`llmfbn.evaluation.Item`, ready for
  :func:`llmfbn.evaluation.evaluate_task`.

``llmfbn.datasets`` needs no torch and sits below :mod:`llmfbn.evaluation`.

Every Bunch has a ``description``: what the data is, where it comes from,
its licence when known, its size and its fields; for the standard datasets,
followed by the first paragraph of the ``PROVENANCE.md`` found beside the
data file.
"""

from llmfbn.datasets._atlas import ATLASES, atlas_path, load_atlas
from llmfbn.datasets._base import DATA_ENV, get_data_dir
from llmfbn.datasets._probe import load_probe_heldout, load_probe_texts
from llmfbn.datasets._standard import (
    load_arc,
    load_boolq,
    load_openbookqa,
    load_piqa,
    load_sst2,
    load_wikitext2,
    load_winogrande,
)

__all__ = [
    "ATLASES",
    "DATA_ENV",
    "atlas_path",
    "get_data_dir",
    "load_arc",
    "load_atlas",
    "load_boolq",
    "load_openbookqa",
    "load_piqa",
    "load_probe_heldout",
    "load_probe_texts",
    "load_sst2",
    "load_wikitext2",
    "load_winogrande",
]
