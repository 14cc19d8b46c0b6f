"""Where networks come from: the text files behind a networks or GLM folder.

Used to warn when an evaluation file is the text the networks were
estimated on (their effect would then be measured on their own data).
"""

import warnings
from pathlib import Path

from llmfbn.io import FormatError, read_networks_folder, read_sidecar

__all__ = ["LeakageWarning", "check_leakage", "source_files"]


class LeakageWarning(UserWarning):
    """An evaluation file is also the text the networks were estimated on."""


def source_files(networks_dir):
    """The input files of the runs a networks or GLM folder was fitted on.

    Parameters
    ----------
    networks_dir : str or Path
        A folder written by ``llmfbn networks`` or ``llmfbn glm``.

    Returns
    -------
    list of Path
        Resolved, sorted, each once. Runs whose recording has moved or whose
        texts were given as a Python list contribute nothing.
    """
    folder = read_networks_folder(networks_dir)
    sources = set()
    for run in folder.runs or []:
        try:
            sidecar = read_sidecar(run)
        except (OSError, FormatError):
            continue
        source = sidecar.get("InputFile")
        if source and source != "<list>":
            sources.add(Path(source).resolve())
    return sorted(sources)


def check_leakage(networks_dir, paths, warn=True):
    """Which of ``paths`` are also the text behind ``networks_dir``.

    Parameters
    ----------
    networks_dir : str or Path
    paths : list of str or Path
        Evaluation files.
    warn : bool, default True
        Issue one :class:`LeakageWarning` per leaking file.

    Returns
    -------
    list of Path
        The leaking files, as given.
    """
    sources = set(source_files(networks_dir))
    leaks = [Path(p) for p in paths if Path(p).resolve() in sources]
    if warn:
        for path in leaks:
            warnings.warn(
                f"The networks in {networks_dir} were estimated on {path}, which is also an "
                f"evaluation file: results will leak. Evaluate on disjoint data (e.g. SST-2 "
                f"dev for networks from SST-2 train).", LeakageWarning, stacklevel=2)
    return leaks
