"""Every tutorial runs end to end (smoke settings), and so does ``llmfbn demo``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("plot_*.py"))


def _env(results):
    env = dict(os.environ, LLMFBN_SMOKE="1", LLMFBN_RESULTS=str(results), MPLBACKEND="Agg",
               HF_HUB_OFFLINE="1")
    env.pop("LLMFBN_DATA", None)  # a user has no ../shared: the built-in probe set only
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One results folder for all tutorials, so later ones reuse earlier recordings."""
    return tmp_path_factory.mktemp("tutorials")


def test_there_are_five_tutorials():
    assert [p.name[:8] for p in TUTORIALS] == [f"plot_0{n}_" for n in range(1, 6)]


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(script, results, tmp_path):
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(results),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert any(results.iterdir())
    assert not (tmp_path / "results").exists()  # everything went under LLMFBN_RESULTS


def test_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "llmfbn", "demo", "--out", str(out)],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in done.stdout
    report = out / "report.html"
    assert f"Open the report: {report.resolve()}" in done.stdout
    text = report.read_text()
    for anchor in ("recording-0", "networks-0", "glm-0", "intervention-0"):
        assert f'id="{anchor}"' in text
    for name in ("recording", "networks", "glm", "inhibit.csv"):
        assert (out / name).exists(), name
