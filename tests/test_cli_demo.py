"""``llmfbn demo``: its outputs are checked before the model loads."""

import pytest

import llmfbn.models
from llmfbn.cli import main


@pytest.fixture
def no_model(monkeypatch):
    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(llmfbn.models, "load_model", load_model)


@pytest.mark.parametrize("make, message", [
    (lambda out: (out / "networks").mkdir(parents=True)
     or (out / "networks" / "notes.txt").write_text("mine"),
     "is not a folder llmfbn wrote"),
    (lambda out: (out / "report.html").mkdir(parents=True), "report.html is a folder"),
    (lambda out: out.parent.mkdir(parents=True, exist_ok=True) or out.write_text("x"),
     "is a file"),
])
def test_demo_refuses_foreign_outputs_before_loading_the_model(tmp_path, capsys, no_model,
                                                                make, message):
    out = tmp_path / "demo"
    make(out)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmfbn: error: ") and err.count("\n") == 1
    assert message in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
