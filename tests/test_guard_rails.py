"""Guard rails: import contracts, lint, library hygiene, scikit-learn API checks, packaging."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks

import llmfbn.cli._info
from llmfbn.cli import error_line, main
from llmfbn.glm import TaskGLM
from llmfbn.io import FormatError, OutputExistsError, OutputLockedError
from llmfbn.networks import NetworkDecomposition

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SUBPACKAGES = ("cli", "cluster", "datasets", "evaluation", "fingerprint", "glm", "grid", "hooks",
               "intervention", "io", "models", "networks", "plotting", "pruning", "recording",
               "reports")


def _tool(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {BIN}: `make install` installs the test "
                    f"extra (setup.cfg [options.extras_require] test).")
    return str(path)


# --- import contracts and lint ------------------------------------------------------

def test_import_contracts_hold():
    """setup.cfg [importlinter]: layers, and no torch below models/hooks."""
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_is_clean():
    out = subprocess.run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise",
                          "llmfbn", "tests", "benchmarks", "tutorials"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


# --- importing llmfbn changes nothing ---------------------------------------------

_SNAPSHOT = """
import json, logging, os, sys
def state():
    root, lib = logging.getLogger(), logging.getLogger("llmfbn")
    return {"env": dict(os.environ), "root": [repr(h) for h in root.handlers],
            "root_level": root.level, "llmfbn": [repr(h) for h in lib.handlers],
            "llmfbn_level": lib.level, "llmfbn_propagate": lib.propagate}
before = state()
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
after = state()
print(json.dumps({"before": before, "after": after}))
"""


def test_importing_llmfbn_changes_no_environment_or_logging():
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    modules = ["llmfbn"] + [f"llmfbn.{name}" for name in SUBPACKAGES]
    out = subprocess.run([sys.executable, "-c", _SNAPSHOT, *modules], capture_output=True,
                         text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    states = json.loads(out.stdout)
    before, after = states["before"], states["after"]
    changed = {k: (before["env"].get(k), after["env"].get(k))
               for k in set(before["env"]) | set(after["env"])
               if before["env"].get(k) != after["env"].get(k)}
    assert not changed, f"importing llmfbn changed the environment: {changed}"
    del before["env"], after["env"]
    assert after == before


def test_log_configures_no_logger(capsys, monkeypatch):
    """Without handlers anywhere, progress goes to stderr and no handler is added."""
    import logging

    from llmfbn._utils import log, logger

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    log("quiet", verbose=0)
    log("shown", verbose=1)
    log("too detailed", verbose=1, level=2)
    assert capsys.readouterr().err == "[llmfbn] shown\n"
    assert logger.handlers == [] and root.handlers == []
    assert logger.propagate and logger.level == logging.NOTSET


def test_log_goes_through_the_applications_logging(caplog, capsys):
    from llmfbn._utils import log

    with caplog.at_level("INFO", logger="llmfbn"):
        log("through logging", verbose=1)
    assert [r.getMessage() for r in caplog.records] == ["through logging"]
    assert capsys.readouterr().err == ""


# --- the CLI: offline mode, one-line errors in flags ------------------------------

def test_cli_main_sets_offline_mode(monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["models"]) == 0
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user's explicit choice is kept
    assert main(["models"]) == 0
    assert os.environ["HF_HUB_OFFLINE"] == "0"


@pytest.mark.parametrize("error, expected", [
    (OutputExistsError("/x/out already exists (a networks folder); pass overwrite=True to "
                       "replace it.", Path("/x/out")),
     "llmfbn: error: /x/out already exists (a networks folder); pass --force to replace it."),
    (ValueError("networks of model 'a' on model 'b': allow it explicitly "
                "(allow_other_model=True)."),
     "llmfbn: error: networks of model 'a' on model 'b': allow it explicitly "
     "(--allow-other-model)."),
    (OutputLockedError("/x/out is being written by process 7; nothing was changed."),
     "llmfbn: error: /x/out is being written by process 7; nothing was changed."),
    (FormatError("/x/grid.json is not a valid grid.json: it lacks ['shape']."),
     "llmfbn: error: /x/grid.json is not a valid grid.json: it lacks ['shape']."),
    (PermissionError(13, "Permission denied", "/x/out"),
     "llmfbn: error: [Errno 13] Permission denied: '/x/out'"),
    (IsADirectoryError(21, "Is a directory", "/x/out.csv"),
     "llmfbn: error: [Errno 21] Is a directory: '/x/out.csv'"),
])
def test_cli_errors_are_one_line_in_flags(monkeypatch, capsys, error, expected):
    def fail(args):
        raise error

    monkeypatch.setattr(llmfbn.cli._info, "_cmd_models", fail)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == expected + "\n"
    assert "overwrite=True" not in err


def test_error_line_joins_a_multi_line_message():
    assert error_line(ValueError("first\n  second")) == "llmfbn: error: first second"


# --- scikit-learn API checks (fit takes folders, so the API-level checks only) ----

ESTIMATORS = [NetworkDecomposition(), TaskGLM()]
API_CHECKS = ["check_parameters_default_constructible", "check_no_attributes_set_in_init",
              "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
              "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params",
              "check_estimator_tags_renamed"]


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_api_checks(estimator, check):
    getattr(estimator_checks, check)(type(estimator).__name__, clone(estimator))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_repr_and_clone_round_trip(estimator):
    params = {k: v for k, v in estimator.get_params().items() if k == "verbose"}
    changed = clone(estimator).set_params(**{k: 1 for k in params})
    again = clone(changed)
    assert again.get_params() == changed.get_params()
    assert type(estimator).__name__ in repr(changed)
    assert repr(again) == repr(changed)


@pytest.mark.parametrize("estimator, calls", [
    (NetworkDecomposition(), [("transform", ("rec",)), ("save", ("out",))]),
    (TaskGLM(), [("compute_contrast", ("a-b",)), ("localize", (["a-b"],)),
                 ("second_level_model", ("a-b",)), ("first_level_model", (0,)),
                 ("plan", ("a-b",))]),
], ids=["NetworkDecomposition", "TaskGLM"])
def test_methods_before_fit_raise_not_fitted(estimator, calls, tmp_path):
    for method, args in calls:
        with pytest.raises(NotFittedError):
            getattr(estimator, method)(*(tmp_path / a if a in ("rec", "out") else a
                                         for a in args))
    assert not (tmp_path / "out").exists()


# --- packaging: the probe texts ship inside the wheel -----------------------------

def test_wheel_ships_the_probe_texts_and_loads_them_outside_the_repo(tmp_path):
    """A non-editable install (wheel -> --target) reads its own probe texts."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the repo
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "results", "build", "*.egg-info", "__pycache__", ".pytest_cache",
        ".ruff_cache", "tests", "tutorials", "benchmarks", "*.lock"))
    out = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("llmfbn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("probe_texts.tsv", "probe_heldout.txt"):
        assert f"llmfbn/datasets/data/{name}" in names

    target = tmp_path / "site"
    out = subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target",
                          str(target), str(wheel)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    code = ("import llmfbn.datasets as d; p = d.load_probe_texts(); "
            "h = d.load_probe_heldout(); print(len(p.texts), p.path, h.path, d.__file__)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(target)))
    assert out.returncode == 0, out.stderr[-3000:]
    n_texts, texts, heldout, module = out.stdout.split()
    assert n_texts == "32"
    for path in (texts, heldout, module):
        assert Path(path).is_relative_to(target), path
