"""Where networks come from, and the warning when an evaluation file is their own text."""

import warnings

import numpy as np
import pytest

from llmfbn.cli import main
from llmfbn.io import run_sibling, write_networks_folder
from llmfbn.models import load_model
from llmfbn.networks import LeakageWarning, check_leakage, source_files
from llmfbn.recording import record


@pytest.fixture
def recorded(tmp_path, tiny_model_dir):
    """A tiny model's recording of a text file, and networks 'fitted' on its runs."""
    text = tmp_path / "train.txt"
    text.write_text("the cat sat on the mat .\nthe dog ran far away\na red house\n")
    loaded = load_model(tiny_model_dir)
    rec = record(loaded, text, tmp_path / "rec", verbose=0)
    masks = np.zeros((1, rec.grid.n_layers, rec.grid.width), bool)
    masks[0, 0, :4] = True
    net = write_networks_folder(tmp_path / "net", masks.astype(np.float32), masks, rec.grid,
                                runs=rec.bold_files)
    return text, net, rec


def test_source_files_and_check_leakage(tmp_path, recorded):
    text, net, rec = recorded
    assert source_files(net) == [text.resolve()]
    other = tmp_path / "dev.txt"
    other.write_text("one two three\n")
    with pytest.warns(LeakageWarning, match="estimated on .*train.txt"):
        assert check_leakage(net, [other, text]) == [text]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_leakage(net, [other]) == []
        assert check_leakage(net, [text], warn=False) == [text]


def test_moved_recording_gives_no_sources(recorded):
    _, net, rec = recorded
    for bold in rec.bold_files:
        run_sibling(bold, "bold.json").unlink()
    assert source_files(net) == []


def test_intervene_cli_warns_before_the_model_loads(tmp_path, recorded, capsys):
    text, net, _ = recorded
    code = main(["intervene", "--model", "nope-model", "--networks", str(net),
                 "--eval", f"text={text}", "--out", str(tmp_path / "r.csv"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "nope-model" in err.splitlines()[-1]  # failed at the model load
    assert "llmfbn: warning: The networks in" in err and "results will leak" in err
