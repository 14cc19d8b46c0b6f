"""Recording: run a model over texts and write its neurons as Nifti images."""

from llmfbn.io import RecordingLayout, bids_label
from llmfbn.recording._capture import ActivationRecorder
from llmfbn.recording._plan import plan_runs
from llmfbn.recording._record import (
    Recording,
    check_record_params,
    record,
    record_activations,
)
from llmfbn.recording._reduce import RunReducer
from llmfbn.recording._texts import TextSet, parse_label_names, read_texts, select_texts

__all__ = [
    "ActivationRecorder",
    "Recording",
    "RecordingLayout",
    "RunReducer",
    "TextSet",
    "bids_label",
    "check_record_params",
    "parse_label_names",
    "plan_runs",
    "read_texts",
    "record",
    "record_activations",
    "select_texts",
]
