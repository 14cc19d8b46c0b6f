"""Every folder and file llmfbn reads or writes, in one place (no torch).

Each on-disk format has one owner module here; the rest of llmfbn hands
objects to these functions and never parses a file name or a file itself.

- :mod:`~llmfbn.io._folders`: folder kinds (``llmfbn.json``), output checks,
  whole-folder replacement and in-place growth, single-file replacement.
- :mod:`~llmfbn.io._lock`: one writer per output (``<output>.lock``).
- :mod:`~llmfbn.io._atomic`: atomic file writes and recovery after a kill.
- :mod:`~llmfbn.io._grid`: ``grid.json``.
- :mod:`~llmfbn.io._hashing`: content hashes of files and folders.
- :mod:`~llmfbn.io._recording`, :mod:`~llmfbn.io._events`: recording folders, their
  runs (image, sidecar, ``_events.tsv``) and task summaries.
- :mod:`~llmfbn.io._networks`, :mod:`~llmfbn.io._glm`: networks and GLM folders.
- :mod:`~llmfbn.io._consistency`: the consistency document.
- :mod:`~llmfbn.io._results`: the results CSV and its settings manifest.
- :mod:`~llmfbn.io._pruning`: pruned model folders and their ``pruning.json``.
- :mod:`~llmfbn.io._fingerprints`: the fingerprint table (``llmfbn fingerprint``).
- :mod:`~llmfbn.io._atlas`: network atlas folders (``llmfbn.datasets.load_atlas``).
"""

from llmfbn.io._atlas import ATLAS_FILE, ATLAS_MAPS, is_atlas_folder, read_atlas, write_atlas
from llmfbn.io._atomic import (
    TMP_PREFIX,
    atomic_path,
    recover_interrupted,
    remove_stale_temporaries,
    write_atomic,
    write_json,
)
from llmfbn.io._consistency import (
    check_consistency_output,
    is_consistency_file,
    read_consistency,
    write_consistency,
)
from llmfbn.io._errors import (
    FolderKindError,
    FormatError,
    OutputExistsError,
    OutputLockedError,
    ResumeMismatchError,
)
from llmfbn.io._events import EVENT_COLUMNS, events_path, read_events, write_events
from llmfbn.io._fingerprints import (
    FINGERPRINT_COLUMNS,
    FINGERPRINT_METHODS,
    check_fingerprints_output,
    is_fingerprints_file,
    read_fingerprints,
    write_fingerprints,
)
from llmfbn.io._folders import (
    FOLDER_FILE,
    FOLDER_KINDS,
    check_folder,
    check_output_file,
    check_output_folder,
    folder_kind,
    open_folder,
    replace_file,
    replace_folder,
)
from llmfbn.io._glm import (
    GLMFolder,
    contrast_file_names,
    map_file_names,
    read_glm_folder,
    write_glm_folder,
)
from llmfbn.io._grid import GRID_FILE, read_grid, write_grid
from llmfbn.io._hashing import file_sha256, folder_sha256
from llmfbn.io._json import check_format_version, jsonable, read_json
from llmfbn.io._lock import OutputLock, lock_path
from llmfbn.io._networks import (
    MODELS_COLUMNS,
    MODELS_FILE,
    NetworksFolder,
    read_networks_folder,
    write_networks_folder,
)
from llmfbn.io._pruning import (
    PRUNING_FILE,
    check_pruned_output,
    is_pruned_folder,
    read_pruning,
    replace_pruned_folder,
    write_pruning,
)
from llmfbn.io._recording import (
    RecordingLayout,
    bids_label,
    check_recording_output,
    check_run,
    check_token_runs,
    find_runs,
    is_run_image,
    read_description,
    read_sidecar,
    read_summaries,
    run_name,
    run_reduction,
    run_sibling,
)
from llmfbn.io._results import (
    RESULT_COLUMNS,
    ResultsTable,
    check_results_output,
    describe_differences,
    is_results_file,
    open_results,
    read_results,
    read_settings,
    settings_differences,
    settings_path,
)

__all__ = [
    "ATLAS_FILE",
    "ATLAS_MAPS",
    "EVENT_COLUMNS",
    "RecordingLayout",
    "bids_label",
    "check_recording_output",
    "check_run",
    "check_token_runs",
    "events_path",
    "find_runs",
    "read_description",
    "read_events",
    "read_sidecar",
    "read_summaries",
    "run_name",
    "run_reduction",
    "is_run_image",
    "run_sibling",
    "write_events",
    "FINGERPRINT_COLUMNS",
    "FINGERPRINT_METHODS",
    "FOLDER_FILE",
    "FOLDER_KINDS",
    "GRID_FILE",
    "MODELS_COLUMNS",
    "MODELS_FILE",
    "TMP_PREFIX",
    "FolderKindError",
    "FormatError",
    "GLMFolder",
    "NetworksFolder",
    "PRUNING_FILE",
    "OutputExistsError",
    "OutputLock",
    "OutputLockedError",
    "RESULT_COLUMNS",
    "ResumeMismatchError",
    "ResultsTable",
    "atomic_path",
    "check_consistency_output",
    "check_fingerprints_output",
    "is_atlas_folder",
    "read_atlas",
    "write_atlas",
    "check_folder",
    "check_format_version",
    "check_output_file",
    "check_output_folder",
    "check_pruned_output",
    "check_results_output",
    "contrast_file_names",
    "describe_differences",
    "file_sha256",
    "folder_kind",
    "folder_sha256",
    "is_consistency_file",
    "is_fingerprints_file",
    "is_pruned_folder",
    "is_results_file",
    "jsonable",
    "lock_path",
    "map_file_names",
    "open_folder",
    "open_results",
    "read_consistency",
    "read_fingerprints",
    "read_glm_folder",
    "read_grid",
    "read_json",
    "read_networks_folder",
    "read_pruning",
    "read_results",
    "read_settings",
    "recover_interrupted",
    "remove_stale_temporaries",
    "replace_file",
    "replace_folder",
    "replace_pruned_folder",
    "settings_differences",
    "settings_path",
    "write_atomic",
    "write_consistency",
    "write_fingerprints",
    "write_glm_folder",
    "write_grid",
    "write_json",
    "write_networks_folder",
    "write_pruning",
]
