"""Task-GLM localizer (llmfbn.glm) on synthetic labelled recordings."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import make_loaded, write_synthetic_recording
from llmfbn.glm import (
    Localizer,
    TaskGLM,
    check_threshold_params,
    first_level_design,
    parse_contrast,
    plan_contrast,
)
from llmfbn.grid import NeuronGrid
from llmfbn.io._recording import run_sibling
from llmfbn.networks import FunctionalNetworks

N_PER_CONDITION, N_TOKENS, SHIFT, N_PLANTED = 12, 40, 1.5, 10


def write_labeled_recording(folder, grid, runs, labels):
    """A recording folder whose events carry labels, as `llmfbn record --label-column` writes.

    ``labels``: per run, one label for every token (str) or one label per token (list).
    """
    events = []
    for n, (data, label) in enumerate(zip(runs, labels)):
        per_token = [label] * len(data) if isinstance(label, str) else list(label)
        assert len(per_token) == len(data)
        events.append([{"onset": t, "duration": 1, "trial_type": lab, "token": f"w{t}",
                        "token_id": t % 50, "text_index": n, "position": t}
                       for t, lab in enumerate(per_token)])
    return write_synthetic_recording(folder, grid, runs, events=events)


def planted_set(grid, seed=0, size=N_PLANTED):
    rng = np.random.default_rng(seed)
    planted = np.zeros(grid.n_neurons, dtype=bool)
    planted[rng.choice(grid.n_neurons, size, replace=False)] = True
    return planted.reshape(grid.n_layers, grid.width)


def between_runs(grid, planted, labels=("positive", "negative"), shift=SHIFT, seed=1,
                 n_per_condition=N_PER_CONDITION):
    """One label per run; the planted neurons shift by ``shift`` in runs of labels[0]."""
    rng = np.random.default_rng(seed)
    runs, run_labels = [], []
    for _ in range(n_per_condition):
        for label in labels:
            data = rng.standard_normal((N_TOKENS, grid.n_layers, grid.width))
            if label == labels[0]:
                data[:, planted] += shift
            runs.append(data.astype(np.float32))
            run_labels.append(label)
    return runs, run_labels


def within_runs(grid, planted, n_runs=N_PER_CONDITION, seed=2):
    """Two texts per run: half 'positive', half 'negative' tokens, plus a large run offset."""
    rng = np.random.default_rng(seed)
    half = N_TOKENS // 2
    runs = []
    for _ in range(n_runs):
        data = rng.standard_normal((N_TOKENS, grid.n_layers, grid.width))
        data += 3.0 * rng.standard_normal((grid.n_layers, grid.width))  # per-run offsets
        data[:half, planted] += SHIFT
        runs.append(data.astype(np.float32))
    labels = [["positive"] * half + ["negative"] * (N_TOKENS - half)] * n_runs
    return runs, labels


@pytest.fixture(scope="module")
def grid():
    return NeuronGrid(4, 64, model="syn", signal="mlp")


@pytest.fixture(scope="module")
def between(tmp_path_factory, grid):
    planted = planted_set(grid)
    runs, labels = between_runs(grid, planted)
    folder = tmp_path_factory.mktemp("between")
    write_labeled_recording(folder, grid, runs, labels)
    return folder, planted, runs, labels


@pytest.fixture(scope="module")
def fitted(between):
    return TaskGLM().fit(between[0])


# -- design and contrasts ------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("positive-negative", {"positive": 1.0, "negative": -1.0}),
    ("positive", {"positive": 1.0}),
    ("a+b-2*c", {"a": 1.0, "b": 1.0, "c": -2.0}),
    ("0.5*a - 0.5*b", {"a": 0.5, "b": -0.5}),
    ("1-0", {"1": 1.0, "0": -1.0}),
    ("-b + 3*a", {"b": -1.0, "a": 3.0}),
    ("a+a-b", {"a": 2.0, "b": -1.0}),
    ("a - 0*b", {"a": 1.0}),
])
def test_parse_contrast(text, expected):
    weights = parse_contrast(text)
    assert weights == expected
    assert list(weights) == list(expected)


@pytest.mark.parametrize("text", ["", "a-", "a b", "*a", "2*", "a--", "a-a", "a*2"])
def test_parse_contrast_refuses_bad_syntax(text):
    with pytest.raises(ValueError, match="contrast"):
        parse_contrast(text)


def test_first_level_design_is_indicators_without_constant():
    events = pd.DataFrame({"onset": [0.0, 1, 2, 3, 4], "duration": [1.0] * 5,
                           "trial_type": ["b", "b", "a", "a", "b"]})
    design = first_level_design(events, 5)
    assert list(design.columns) == ["b", "a"]
    np.testing.assert_array_equal(design.to_numpy(), [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]])
    drift = first_level_design(events, 5, drift_model="polynomial")
    assert list(drift.columns) == ["b", "a", "drift_1"]  # nilearn's constant dropped
    with pytest.raises(ValueError, match=r"exactly one event; tokens \[5\]"):
        first_level_design(events, 6)  # token 5 is in no event
    with pytest.raises(ValueError, match="disagree"):
        first_level_design(events, 4)
    with pytest.raises(ValueError, match="'drift_model' must be one of"):
        first_level_design(events, 5, drift_model="linear")


def test_plan_layouts_and_errors():
    between = [("p",), ("n",), ("p",), ("n",), ("code",)]
    plan = plan_contrast("p-n", between)
    assert plan.layout == "between-run" and plan.runs == [0, 1, 2, 3]
    assert plan.n_runs == {"p": 2, "n": 2} and plan.dof == 2
    np.testing.assert_array_equal(plan.design.to_numpy(), [[1, 0], [0, 1], [1, 0], [0, 1]])
    np.testing.assert_array_equal(plan.vector, [1, -1])
    within = [("p", "n"), ("n", "p"), ("p", "n")]
    plan = plan_contrast("p-n", within)
    assert plan.layout == "within-run" and plan.n_runs == {"p": 3, "n": 3}
    assert list(plan.design.columns) == ["intercept"] and plan.dof == 2
    with pytest.raises(ValueError, match=r"'x'.*'p', 'n', 'code'"):
        plan_contrast("p-x", between)
    with pytest.raises(ValueError, match="'code' has 1"):
        plan_contrast("p-code", between)
    with pytest.raises(ValueError, match="needs one of two run layouts"):
        plan_contrast("p-n", [("p", "n"), ("p",), ("n",)])
    with pytest.raises(ValueError, match="'p' has 1"):
        plan_contrast("p-n", [("p", "n")])
    assert plan_contrast("non-word", [("non-word",), ("non-word",)]).weights == {"non-word": 1}


# -- recovery and equivalence ------------------------------------------------------------


def test_planted_neurons_are_recovered(fitted, between, grid):
    _, planted, _, _ = between
    result = fitted.localize("positive-negative")
    mask = result.masks[0]
    assert (mask & planted).sum() == N_PLANTED, "every planted neuron is found"
    assert (mask & ~planted).sum() <= 2, "FDR: few false positives"
    assert np.isfinite(result.thresholds[0]) and result.thresholds[0] > 2
    assert result.z_maps[0][planted].min() > 5
    assert fitted.conditions_ == {"positive": 12, "negative": 12}
    assert len(fitted.run_paths_) == 24 and fitted.grid_ == grid
    assert fitted.effect_maps_[0]["positive"].dtype == np.float32
    # one network whose maps are the z-maps as they are and whose mask is the selection
    nets = result.networks
    assert len(nets) == 1
    np.testing.assert_array_equal(nets.maps[0], result.z_maps[0])
    np.testing.assert_array_equal(nets.masks[0], mask)
    assert nets.params["n_runs"] == [{"positive": 12, "negative": 12}]
    assert nets.params["design"] == ["between-run"]
    assert nets.params["height_control"] == "fdr" and nets.params["alpha"] == 0.05
    layer, unit, z = result.peak(0)
    assert planted[layer, unit] and z == result.z_maps[0].max()
    # the opposite contrast (one-sided) selects nothing
    assert fitted.localize("negative-positive").n_selected[0] == 0


def _own_effect_maps(grid, runs, labels, conditions):
    """Per run, nilearn FirstLevelModel effect maps with an independently built design."""
    from nilearn.glm.first_level import FirstLevelModel

    maps = []
    for data, label in zip(runs, labels):
        design = pd.get_dummies(pd.Series([label] * len(data)), dtype=float)
        model = FirstLevelModel(mask_img=grid.mask_img(), smoothing_fwhm=None,
                                signal_scaling=False, noise_model="ols", drift_model=None,
                                minimize_memory=True)
        with warnings.catch_warnings():  # nilearn's notes on ignored settings
            warnings.simplefilter("ignore")
            model.fit(grid.to_img(data), design_matrices=[design])
        maps.append({c: model.compute_contrast(
            (design.columns == c).astype(float), output_type="effect_size")
            for c in conditions if c in design.columns})
    return maps


def test_z_map_equals_nilearn_second_level(fitted, between, grid):
    from nilearn.glm.second_level import SecondLevelModel

    _, _, runs, labels = between
    own = _own_effect_maps(grid, runs, labels, ["positive", "negative"])
    inputs = [m[label] for m, label in zip(own, labels)]
    design = pd.DataFrame({"pos": [float(x == "positive") for x in labels],
                           "neg": [float(x == "negative") for x in labels]})
    model = SecondLevelModel(mask_img=grid.mask_img(), smoothing_fwhm=None)
    model.fit(inputs, design_matrix=design)
    expected = grid.from_img(model.compute_contrast([1, -1], output_type="z_score"))
    ours = fitted.compute_contrast("positive-negative")
    grid.check_img(ours)
    np.testing.assert_allclose(grid.from_img(ours), expected, rtol=1e-5, atol=1e-5)
    # and the t map is the textbook two-sample t-test of per-run means
    means = np.stack([r.mean(axis=0) for r in runs])
    is_pos = np.array(labels) == "positive"
    t_expected = stats.ttest_ind(means[is_pos], means[~is_pos], axis=0).statistic
    t = grid.from_img(fitted.compute_contrast("positive-negative", output_type="stat"))
    np.testing.assert_allclose(t, t_expected, rtol=1e-4, atol=1e-4)
    effect = grid.from_img(fitted.compute_contrast("positive-negative", "effect_size"))
    np.testing.assert_allclose(effect, means[is_pos].mean(0) - means[~is_pos].mean(0),
                               atol=1e-5)


def test_first_level_model_is_reachable(fitted):
    model = fitted.first_level_model(0)
    assert list(model.design_matrices_[0].columns) == ["positive"]
    assert model.hrf_model is None and model.t_r == 1.0 and model.noise_model == "ols"
    img = model.compute_contrast(np.array([1.0]), output_type="effect_size")
    np.testing.assert_allclose(fitted.grid_.from_img(img), fitted.effect_maps_[0]["positive"],
                               atol=1e-6)
    with pytest.raises(ValueError, match="'run' must be an int in"):
        fitted.first_level_model(24)


def test_null_recording_selects_nothing(tmp_path, grid):
    runs, labels = between_runs(grid, planted_set(grid), shift=0.0, seed=5)
    write_labeled_recording(tmp_path, grid, runs, labels)
    result = TaskGLM().fit(tmp_path).localize(["positive-negative", "negative-positive"])
    assert result.n_selected.tolist() == [0, 0]
    assert np.abs(result.z_maps).max() < 4.5


def test_within_run_paired_design(tmp_path, grid):
    planted = planted_set(grid, seed=3)
    runs, labels = within_runs(grid, planted)
    write_labeled_recording(tmp_path, grid, runs, labels)
    glm = TaskGLM().fit(tmp_path)
    assert glm.conditions_ == {"positive": 12, "negative": 12}
    assert glm.plan("positive-negative").layout == "within-run"
    result = glm.localize("positive-negative")
    mask = result.masks[0]
    assert (mask & planted).sum() == N_PLANTED and (mask & ~planted).sum() <= 2
    assert result.info["contrasts"][0]["design"] == "within-run"
    # paired: one-sample t-test of the per-run differences (the run offsets cancel)
    diff = np.stack([r[:20].mean(0) - r[20:].mean(0) for r in runs])
    t = grid.from_img(glm.compute_contrast("positive-negative", output_type="stat"))
    np.testing.assert_allclose(t, stats.ttest_1samp(diff, 0, axis=0).statistic,
                               rtol=1e-4, atol=1e-4)


def test_numeric_labels(tmp_path, grid):
    planted = planted_set(grid, seed=4)
    runs, labels = between_runs(grid, planted, labels=("1", "0"), seed=6)
    write_labeled_recording(tmp_path, grid, runs, labels)
    glm = TaskGLM().fit(tmp_path, contrasts=["1-0"])
    assert glm.conditions_ == {"1": 12, "0": 12}
    result = glm.localize(["1-0", "0-1"])
    assert (result.masks[0] & planted).sum() == N_PLANTED
    assert (result.masks[0] & ~planted).sum() <= 2
    assert result.n_selected[1] == 0


def test_drift_model_keeps_the_planted_neurons(between):
    glm = TaskGLM(drift_model="polynomial").fit(between[0])
    assert list(glm.design_matrices_[0].columns) == ["positive", "drift_1"]
    assert (glm.localize("positive-negative").masks[0] & between[1]).sum() == N_PLANTED


# -- thresholding ----------------------------------------------------------------------------


def test_height_controls_and_given_threshold(fitted, between):
    planted = between[1]
    fpr = fitted.localize("positive-negative", height_control="fpr", alpha=0.01)
    assert fpr.thresholds[0] == pytest.approx(stats.norm.isf(0.01))
    bonf = fitted.localize("positive-negative", height_control="bonferroni")
    assert bonf.thresholds[0] == pytest.approx(stats.norm.isf(0.05 / 256))
    assert (bonf.masks[0] == planted).all()
    given = fitted.localize("positive-negative", height_control=None, threshold=10.0)
    assert given.thresholds == [10.0]
    np.testing.assert_array_equal(given.masks[0], given.z_maps[0] >= 10.0)
    # a given threshold overrides the height control
    assert fitted.localize("positive-negative", threshold=10.0).thresholds == [10.0]
    # two-sided keeps strongly negative neurons too
    two = fitted.localize("negative-positive", height_control="bonferroni", two_sided=True)
    assert (two.masks[0] == planted).all()
    assert two.thresholds[0] == pytest.approx(stats.norm.isf(0.05 / 2 / 256))


def test_top_k_keeps_the_strongest_of_those_passing(fitted, between):
    planted = between[1]
    full = fitted.localize("positive-negative", height_control="bonferroni")
    top = fitted.localize("positive-negative", height_control="bonferroni", top_k=3)
    z = top.z_maps[0]
    assert top.n_selected[0] == 3 and top.info["contrasts"][0]["n_passing"] == planted.sum()
    assert (top.masks[0] <= full.masks[0]).all()
    assert z[top.masks[0]].min() >= z[full.masks[0] & ~top.masks[0]].max()
    assert top.thresholds == full.thresholds and top.networks.params["top_k"] == 3
    many = fitted.localize("positive-negative", height_control="bonferroni", top_k=1000)
    np.testing.assert_array_equal(many.masks[0], full.masks[0])  # fewer pass: all kept
    two = fitted.localize("negative-positive", height_control="bonferroni", two_sided=True,
                          top_k=2)
    assert two.n_selected[0] == 2 and (two.masks[0] <= planted).all()
    with pytest.raises(ValueError, match="'top_k'"):
        fitted.localize("positive-negative", top_k=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"height_control": "holm"}, ValueError, "'height_control' must be one of"),
    ({"alpha": 0.0}, ValueError, "'alpha' must lie in"),
    ({"alpha": "0.05"}, TypeError, "'alpha' must be a float"),
    ({"height_control": None}, ValueError, "'threshold'"),
    ({"threshold": -1.0, "two_sided": True}, ValueError, "'threshold' must be >= 0"),
    ({"threshold": float("nan")}, ValueError, "finite"),
])
def test_threshold_params_are_checked(fitted, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_threshold_params(**kwargs)
    with pytest.raises(error, match=match):
        fitted.localize("positive-negative", **kwargs)


# -- bad input ------------------------------------------------------------------------------


def test_no_labels_is_refused_with_the_record_hint(tmp_path, grid):
    runs, _ = between_runs(grid, planted_set(grid), n_per_condition=2)
    write_labeled_recording(tmp_path / "tokens", grid, runs, ["token"] * len(runs))
    with pytest.raises(ValueError, match="no condition labels.*--label-column"):
        TaskGLM().fit(tmp_path / "tokens")
    write_synthetic_recording(tmp_path / "bare", grid, runs)  # no events files at all
    with pytest.raises(ValueError, match="no _events.tsv.*--label-column"):
        TaskGLM().fit(tmp_path / "bare")
    paths = write_labeled_recording(tmp_path / "some", grid, runs, ["p", "n"] * 2)
    run_sibling(paths[1], "events.tsv").unlink()
    with pytest.raises(ValueError, match="1 of 4 runs have no events file"):
        TaskGLM().fit(tmp_path / "some")


def test_bad_contrasts_fail_before_fitting(fitted, between, tmp_path, grid):
    with pytest.raises(ValueError, match=r"Unknown condition 'neutral'.*'positive', 'negative'"):
        TaskGLM().fit(between[0], contrasts=["positive-neutral"])
    with pytest.raises(ValueError, match="Unknown condition"):
        fitted.localize(["positive-negative", "positive-neutral"])
    with pytest.raises(ValueError, match="distinct"):
        fitted.localize(["positive-negative", "positive-negative"])
    runs, labels = between_runs(grid, planted_set(grid), n_per_condition=2)
    write_labeled_recording(tmp_path / "few", grid, runs[:3], labels[:3])  # p, n, p
    with pytest.raises(ValueError, match=r"Too few runs.*'negative' has 1"):
        TaskGLM().fit(tmp_path / "few", contrasts="positive-negative")
    mixed = labels[:3] + [["positive"] * 20 + ["negative"] * 20]
    write_labeled_recording(tmp_path / "mixed", grid, runs[:4], mixed)
    with pytest.raises(ValueError, match="needs one of two run layouts.*1 of 4 runs hold "
                                         "several conditions"):
        TaskGLM().fit(tmp_path / "mixed", contrasts="positive-negative")


def test_estimator_params_are_checked(between):
    with pytest.raises(ValueError, match="'drift_model' must be one of"):
        TaskGLM(drift_model="linear").fit(between[0])
    with pytest.raises(ValueError, match="'noise_model' must be one of"):
        TaskGLM(noise_model="ar2").fit(between[0])
    with pytest.raises(ValueError, match="'output_type' must be one of"):
        TaskGLM().fit(between[0]).compute_contrast("positive", output_type="z")


# -- save / load / interventions ------------------------------------------------------------


def test_saved_folder_loads_and_drives_interventions(tmp_path):
    import torch

    from llmfbn.intervention import inhibit, resolve_targets

    loaded = make_loaded("llama")
    grid = NeuronGrid(3, 24, model=loaded.name, signal="mlp")  # the tiny Llama's MLP
    planted = planted_set(grid, seed=7, size=6)
    runs, labels = between_runs(grid, planted, labels=("code", "fact"), seed=8)
    write_labeled_recording(tmp_path / "rec", grid, runs, labels)
    result = TaskGLM().fit(tmp_path / "rec").localize(["code-fact", "0.5*code - 0.5*fact"],
                                                      height_control="bonferroni")
    out = result.save(tmp_path / "glm")
    names = {p.name for p in out.iterdir()}
    assert {"components.nii.gz", "networks.nii.gz", "networks.json", "grid.json", "glm.json",
            "zmap_code-fact.nii.gz", "zmap_0.5xcode-0.5xfact.nii.gz"} <= names

    nets = FunctionalNetworks.load(out)
    assert len(nets) == 2 and nets.grid == grid
    np.testing.assert_array_equal(nets.masks, result.masks)
    np.testing.assert_allclose(nets.maps, result.z_maps)
    assert nets.params == json.loads(json.dumps(result.networks.params))
    assert nets.params["contrasts"] == ["code-fact", "0.5*code - 0.5*fact"]
    targets = resolve_targets(loaded.model, nets, networks=[0])
    expected = {layer: np.flatnonzero(planted[layer]).tolist()
                for layer in range(3) if planted[layer].any()}
    assert {k: v.tolist() for k, v in targets.items()} == expected
    ids = torch.tensor([[2, 3, 4, 5]])
    with torch.no_grad():
        base = loaded.model(ids).logits
        with inhibit(loaded.model, nets):
            edited = loaded.model(ids).logits
    assert not torch.allclose(base, edited)

    again = Localizer.load(out)
    assert again.contrasts == result.contrasts
    np.testing.assert_allclose(again.z_maps, result.z_maps)
    np.testing.assert_allclose(again.t_maps, result.t_maps)
    np.testing.assert_array_equal(again.masks, result.masks)
    assert again.thresholds == pytest.approx(result.thresholds)
    doc = json.loads((out / "glm.json").read_text())
    assert doc["conditions"] == {"code": 12, "fact": 12} and doc["model"] == "tiny-llama"
    entry = doc["contrasts"][0]
    assert entry["design"] == "between-run" and entry["n_runs"] == {"code": 12, "fact": 12}
    assert entry["n_selected"] == int(planted.sum())
    assert entry["threshold"] == pytest.approx(stats.norm.isf(0.05 / 72))
    assert json.loads((out / "params.json").read_text())["runs"][0].endswith("_bold.nii")


def test_no_discovery_threshold_round_trips(fitted, tmp_path):
    result = fitted.localize("negative-positive")
    assert result.thresholds == [np.inf]
    result.save(tmp_path)
    doc = json.loads((tmp_path / "glm.json").read_text())  # strict JSON: no Infinity
    assert doc["contrasts"][0]["threshold"] is None
    assert "Infinity" not in (tmp_path / "networks.json").read_text()
    assert Localizer.load(tmp_path).thresholds == [np.inf]


def test_glm_folder_is_its_own_kind_and_damage_is_named(fitted, tmp_path):
    from llmfbn.io import FolderKindError, FormatError, OutputExistsError, folder_sha256

    result = fitted.localize("positive-negative")
    networks = tmp_path / "net"
    result.networks.save(networks)
    before = folder_sha256(networks)
    with pytest.raises(FolderKindError, match="networks folder; refusing to write a glm"):
        result.save(networks, overwrite=True)  # --force replaces its own kind only
    assert folder_sha256(networks) == before
    with pytest.raises(FolderKindError, match="networks folder, not a glm folder"):
        Localizer.load(networks)
    out = result.save(tmp_path / "glm")
    with pytest.raises(OutputExistsError):
        result.save(out)
    assert FunctionalNetworks.load(out).params["contrasts"] == ["positive-negative"]
    doc = json.loads((out / "glm.json").read_text())
    assert doc["format_version"] == 1
    doc["contrasts"][0]["files"]["zmap"] = "../elsewhere.nii.gz"
    (out / "glm.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"glm\.json names an invalid zmap file"):
        Localizer.load(out)
    (out / "glm.json").write_text("[]")
    with pytest.raises(FormatError, match=r"glm\.json is not a valid glm\.json"):
        Localizer.load(out)
