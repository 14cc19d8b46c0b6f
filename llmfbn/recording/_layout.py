"""The BIDS-derivatives-style recording folder: one model is one subject.

::

    OUT/
      dataset_description.json
      grid.json                      neuron <-> voxel map (NeuronGrid sidecar)
      mask.nii.gz                    neurons in, padding out
      sub-<model>/func/
        sub-<model>_task-<task>_run-<n>_bold.nii[.gz]   4-D, float, time = tokens
        sub-<model>_task-<task>_run-<n>_bold.json       model, weights hash, signal, TR 1.0
        sub-<model>_task-<task>_run-<n>_events.tsv      one row per token
        sub-<model>_task-<task>_summary.json            counts for the whole task

Every file is written atomically (temp file + rename) and the ``_bold.json``
sidecar last, so a run is complete exactly when its sidecar exists.
"""

import json
import re
from pathlib import Path

import nibabel as nib

from llmfbn import __version__
from llmfbn.io import atomic_path, read_grid, remove_stale_temporaries, write_atomic, write_grid
from llmfbn.grid import NeuronGrid

__all__ = ["RecordingLayout", "bids_label"]

BIDS_VERSION = "1.9.0"
RUN_DIGITS = 5


def bids_label(name):
    """Make a BIDS label (letters and digits only) from a model or task name.

    ``"smollm2-135m"`` -> ``"smollm2135m"``; a path keeps its last part.
    """
    name = str(name).rstrip("/\\")
    name = re.split(r"[/\\]", name)[-1]
    if name.endswith(".gguf"):
        name = name[: -len(".gguf")]
    label = re.sub(r"[^A-Za-z0-9]", "", name)
    if not label:
        raise ValueError(f"Cannot derive a BIDS label (letters and digits) from {name!r}.")
    return label


def escape_token(token):
    """Make a token string safe for one TSV cell (tabs, newlines escaped)."""
    return (token.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


class RecordingLayout:
    """Paths and safe writes of one recording folder.

    Parameters
    ----------
    out_dir : str or Path
    subject : str
        BIDS subject label (letters and digits).
    task : str
        BIDS task label (letters and digits).
    compress : bool
        Write ``.nii.gz`` rather than ``.nii``.
    """

    def __init__(self, out_dir, subject, task, compress=False):
        self.root = Path(out_dir)
        for value, what in ((subject, "subject"), (task, "task")):
            if not re.fullmatch(r"[A-Za-z0-9]+", str(value)):
                raise ValueError(
                    f"'{what}' must be letters and digits only (a BIDS label). "
                    f"{value!r} was provided."
                )
        self.subject = subject
        self.task = task
        self.extension = ".nii.gz" if compress else ".nii"
        self.func_dir = self.root / f"sub-{subject}" / "func"

    # -- paths ------------------------------------------------------------

    def stem(self, run):
        return f"sub-{self.subject}_task-{self.task}_run-{run:0{RUN_DIGITS}d}"

    def bold_path(self, run):
        return self.func_dir / (self.stem(run) + "_bold" + self.extension)

    def sidecar_path(self, run):
        return self.func_dir / (self.stem(run) + "_bold.json")

    def events_path(self, run):
        return self.func_dir / (self.stem(run) + "_events.tsv")

    @property
    def summary_path(self):
        return self.func_dir / f"sub-{self.subject}_task-{self.task}_summary.json"

    # -- folder-level checks ----------------------------------------------

    def prepare(self, grid, identity):
        """Create the folder, or check that it holds the same model and signal.

        Parameters
        ----------
        grid : NeuronGrid
        identity : dict
            ``model``, ``weights_hash``, ``signal``: what this recording is of.

        Raises
        ------
        ValueError
            If the folder holds a recording of another model, weights, signal
            or grid. Recordings are never mixed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        grid_file = self.root / "grid.json"
        description_file = self.root / "dataset_description.json"
        if grid_file.exists():
            existing = read_grid(grid_file)
            if existing != grid:
                raise ValueError(
                    f"{self.root} already holds a recording of {existing!r}; "
                    f"this one is {grid!r}. Recordings of different models, signals "
                    f"or layers are never mixed: choose another --out."
                )
        if description_file.exists():
            previous = json.loads(description_file.read_text()).get("llmfbn", {})
            for key in ("model", "weights_hash", "signal"):
                if previous.get(key) != identity.get(key):
                    raise ValueError(
                        f"{self.root} holds a recording with {key}="
                        f"{previous.get(key)!r}; this one has {key}="
                        f"{identity.get(key)!r}. Choose another --out."
                    )
        removed = remove_stale_temporaries(self.root)
        if not description_file.exists():
            description = {
                "Name": f"llmfbn recording of {identity['model']}",
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "llmfbn", "Version": __version__}],
                "llmfbn": identity,
            }
            write_atomic(description_file, json.dumps(description, indent=2) + "\n")
        if not grid_file.exists():
            write_grid(grid_file, grid)
        mask_file = self.root / "mask.nii.gz"
        if not mask_file.exists():
            with atomic_path(mask_file) as tmp:
                nib.save(grid.mask_img(), tmp)
        return removed

    def is_done(self, run, input_hash):
        """True when run ``run`` is complete; refuse if it was made from other input."""
        sidecar = self.sidecar_path(run)
        if not sidecar.exists():
            return False
        recorded = json.loads(sidecar.read_text()).get("InputHash")
        if recorded != input_hash:
            raise ValueError(
                f"{sidecar.name} in {self.func_dir} was recorded from other texts "
                f"(or another tokenizer, --max-tokens or --texts-per-run) than run "
                f"{run} of this input. Use another --task or --out."
            )
        if not self.bold_path(run).exists():
            raise FileNotFoundError(
                f"{sidecar.name} exists but {self.bold_path(run).name} is missing; "
                f"remove the sidecar to record the run again."
            )
        return True

    # -- writing a run ----------------------------------------------------

    def write_run(self, run, img, events, sidecar):
        """Write a run's image, events and sidecar atomically, sidecar last.

        Parameters
        ----------
        run : int
        img : nibabel.Nifti1Image
        events : list of dict
            Rows with keys ``onset, duration, trial_type, token, token_id,
            text_index, position``.
        sidecar : dict
        """
        self.func_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.bold_path(run)) as tmp:
            nib.save(img, tmp)
        columns = ["onset", "duration", "trial_type", "token", "token_id",
                   "text_index", "position"]
        lines = ["\t".join(columns)]
        for row in events:
            lines.append("\t".join(str(row[c]) for c in columns))
        write_atomic(self.events_path(run), "\n".join(lines) + "\n")
        write_atomic(self.sidecar_path(run), json.dumps(sidecar, indent=2) + "\n")

    def write_summary(self, summary):
        write_atomic(self.summary_path, json.dumps(summary, indent=2) + "\n")

    def bold_files(self):
        """Finished runs' images of this task, in run order."""
        done = sorted(self.func_dir.glob(f"sub-{self.subject}_task-{self.task}_run-*_bold.json"))
        return [p.with_name(p.name[: -len(".json")] + self.extension) for p in done]

