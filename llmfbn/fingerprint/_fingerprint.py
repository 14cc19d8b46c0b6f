"""``fingerprint(reference, candidates, texts)``: what ``llmfbn fingerprint`` runs."""

import gc
import os
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmfbn._utils import check_positive_int, log
from llmfbn.evaluation import position_limit
from llmfbn.fingerprint._activations import model_grid, word_activations
from llmfbn.fingerprint._align import check_fast_tokenizer, shared_words, token_words
from llmfbn.fingerprint._networks import fit_networks
from llmfbn.fingerprint._reference import (
    atlas_time_courses,
    choose_reference_atlas,
    read_reference_atlas,
)
from llmfbn.fingerprint._scores import (
    centred_gram,
    cka_null,
    fbn_null,
    fbn_score,
    linear_cka,
    p_value,
)
from llmfbn.io import FINGERPRINT_COLUMNS, FINGERPRINT_METHODS
from llmfbn.models import LoadedModel, check_dtype, load_model, locate_neurons, resolve_device
from llmfbn.recording import read_texts

__all__ = ["DEFAULT_N_COMPONENTS", "METHODS", "MIN_WORDS_PER_COMPONENT", "fingerprint"]

#: The scores of each candidate, one row each, in this order.
METHODS = FINGERPRINT_METHODS
#: The shared words must number at least this many times ``n_components``.
MIN_WORDS_PER_COMPONENT = 5
#: Networks per model when neither ``n_components`` nor an atlas says.
DEFAULT_N_COMPONENTS = 10


@dataclass
class _Model:
    """One distinct model of the comparison (the reference and a candidate may be one)."""

    spec: object  # what the caller gave: a name, a path or a LoadedModel
    label: str  # its name in the table
    role: str  # "reference" or "candidate", for messages
    loaded: object = None
    words: object = None  # TokenWords


def _label(spec):
    return spec.name if isinstance(spec, LoadedModel) else str(spec)


def _key(spec):
    return ("object", id(spec)) if isinstance(spec, LoadedModel) else ("name", str(spec))


def _check_spec(spec, role):
    if not isinstance(spec, (str, os.PathLike, LoadedModel)):
        raise TypeError(f"The {role} must be a model name, a path or a LoadedModel. "
                        f"{type(spec).__name__} was provided.")
    if isinstance(spec, str) and not spec.strip():
        raise ValueError(f"The {role} must be a model name or a path. '' was provided.")


def _load(model, device, dtype, verbose):
    """``model.spec`` loaded (a LoadedModel as given); any failure names the model."""
    if isinstance(model.spec, LoadedModel):
        return model.spec
    try:
        return load_model(model.spec, dtype=dtype, device=device, verbose=max(verbose - 1, 0))
    except Exception as err:  # whatever the loader met: this model cannot be loaded
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"The {model.role} {model.label!r} cannot be loaded: {reason}") from None


def _release(model):
    """Free the weights of a model loaded here (a LoadedModel given stays the caller's)."""
    if not isinstance(model.spec, LoadedModel) and model.loaded is not None:
        device = model.loaded.device
        model.loaded = None
        gc.collect()
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _check_params(n_components, n_permutations, max_tokens, batch_size, random_state):
    if n_components is not None:
        check_positive_int(n_components, "n_components")
    check_positive_int(n_permutations, "n_permutations")
    check_positive_int(max_tokens, "max_tokens")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(random_state, "random_state", minimum=0)


def _models(reference, candidates):
    """The distinct models (reference first) and each candidate's position among them."""
    if isinstance(candidates, (str, os.PathLike, LoadedModel)):
        candidates = [candidates]
    candidates = list(candidates)
    if not candidates:
        raise ValueError("'candidates' must name at least one model. [] was provided.")
    _check_spec(reference, "reference")
    models, index, order = [_Model(reference, _label(reference), "reference")], {}, []
    index[_key(reference)] = 0
    for n, spec in enumerate(candidates, start=1):
        _check_spec(spec, f"candidate {n}")
        if _key(spec) not in index:
            index[_key(spec)] = len(models)
            models.append(_Model(spec, _label(spec), "candidate"))
        order.append(index[_key(spec)])
    twice = sorted(label for label, n in Counter(m.label for m in models).items() if n > 1)
    if twice:
        raise ValueError(f"The reference and candidates must have distinct names, the table's "
                         f"only way to tell them apart: {twice} names several different "
                         f"models. Give each LoadedModel its own name.")
    return models, order


def _check_words(axis, models, textset, n_components):
    needed = MIN_WORDS_PER_COMPONENT * n_components
    if axis.n_words >= needed:
        return
    limiters = sorted({models[m].label for m in axis.limited_by if m is not None})
    cut = (f"; max_tokens cut texts short for {limiters}" if limiters else "")
    raise ValueError(
        f"'texts' {textset.source} gives {axis.n_words} words that every model reads "
        f"({len(textset)} texts{cut}), too few for n_components={n_components}: "
        f"fingerprint needs at least {MIN_WORDS_PER_COMPONENT} words per network "
        f"({needed}). Give longer or more texts, or lower 'n_components'.")


def _read_words(model, texts, max_tokens):
    """``model``'s TokenWords of ``texts`` and its neuron grid, once its tokenizer is checked.

    ``model.loaded`` is the model; here or on a cluster's worker.
    """
    check_fast_tokenizer(model.loaded.tokenizer, model.label)
    try:
        locate_neurons(model.loaded.model)
    except ValueError as err:
        raise ValueError(f"The {model.role} {model.label!r}: {err}") from None
    limit = position_limit(model.loaded.model)
    words = token_words(model.loaded.tokenizer, texts,
                        max_tokens if limit is None else min(max_tokens, limit))
    return words, model_grid(model.loaded)


def _check_neurons(models, grids, n_components):
    for model, grid in zip(models, grids):
        if grid.n_neurons < n_components:
            raise ValueError(f"'n_components' must be at most the {grid.n_neurons} MLP "
                             f"neurons of {model.label!r}. {n_components} was provided.")


def _model_features(model, axis, n_components, batch_size, random_state, verbose=0,
                    atlas=None, as_candidate=True):
    """One model's features: its network time courses and centred word Gram matrix.

    ``model.loaded`` is the model (here or on a cluster's worker) and
    ``model.words`` its tokens; its weights are freed (:func:`_release`)
    once its activations are recorded.

    Returns
    -------
    time_courses : ndarray of shape (n_words, n_components)
        CanICA's networks on these words (None when ``atlas`` is given and
        not ``as_candidate``).
    gram : float64 ndarray of shape (n_words, n_words)
    atlas_courses : ndarray of shape (n_words, n_networks), only with ``atlas``
        The atlas's networks' time courses: the reference's networks.
    """
    activations, grid = word_activations(model.loaded, model.words, axis,
                                         batch_size=batch_size, desc=model.label,
                                         verbose=verbose)
    _release(model)
    bad = int(np.size(activations) - np.count_nonzero(np.isfinite(activations)))
    if bad:
        raise FloatingPointError(
            f"The {model.role} {model.label!r} gave {bad} non-finite activations (NaN or "
            f"inf) over these texts; run it in float32 ('model_dtype').")
    courses = None
    if atlas is None or as_candidate:
        courses = fit_networks(activations, grid, n_components=n_components,
                               random_state=random_state, name=model.label).time_courses
    if atlas is None:
        return courses, centred_gram(activations)
    return courses, centred_gram(activations), atlas_time_courses(activations, grid, atlas)


class _InProcess:
    """Each model loaded in this process, one at a time (``fingerprint`` without a scheduler).

    ``words`` and ``features`` as :class:`llmfbn.fingerprint._cluster.OnCluster`.
    """

    def __init__(self, device, dtype, verbose):
        self.device, self.dtype, self.verbose = device, dtype, verbose

    def words(self, models, texts, max_tokens):
        """Each model's ``(TokenWords, NeuronGrid)``, in order; each loaded (then freed) first."""
        words = []
        for model in models:
            model.loaded = _load(model, self.device, self.dtype, self.verbose)
            words.append(_read_words(model, texts, max_tokens))
            _release(model)
        return words

    def features(self, models, axis, n_components, batch_size, random_state, atlas=None,
                 reference_is_candidate=True):
        """Yield ``(position, features)`` of each model (:func:`_model_features`), the
        reference first.

        ``atlas``: the reference's networks, if they come from an atlas; its
        own CanICA networks are then fitted only if ``reference_is_candidate``.
        """
        for position, model in enumerate(models):
            if model.loaded is None:
                model.loaded = _load(model, self.device, self.dtype, self.verbose)
            yield position, _model_features(
                model, axis, n_components, batch_size, random_state, self.verbose,
                atlas=atlas if position == 0 else None,
                as_candidate=position != 0 or reference_is_candidate)


def fingerprint(reference, candidates, texts, n_components=None, n_permutations=200,
                max_tokens=512, batch_size=8, device=None, model_dtype=None, random_state=0,
                reference_atlas="auto", scheduler=None, verbose=0):
    """Score how much each candidate model shares the reference model's functional networks.

    The method is in :mod:`llmfbn.fingerprint`: per model, CanICA networks of
    the ``mlp`` neurons over the texts' whitespace words; the ``fbn`` score
    is the mean |r| of the reference's network time courses matched one to
    one (Hungarian) to the candidate's, so candidates of another
    architecture, width or tokenizer can be scored and a permutation of a
    layer's neurons changes nothing; ``cka`` is linear CKA of the two
    models' word x neuron activations. Both lie in [0, 1], 1 for the
    reference itself. Nulls: the candidate's time courses shifted circularly
    within each text (fbn), its words permuted within each text (cka),
    ``n_permutations`` draws each; ``p_value = (1 + #(null >= score)) / (1 +
    n_permutations)``. The same inputs and ``random_state`` give the same
    table, bit for bit, on the same machine and device; every candidate's
    null uses the same draws (seeded by ``random_state`` and the method), so
    its rows do not depend on the other candidates listed.

    The reference's networks may come from an atlas instead
    (``reference_atlas``): fixed maps of the reference model, e.g. the
    built-in :func:`llmfbn.datasets.load_atlas` ``"smollm2-135m"``, which
    ``"auto"`` takes when the reference is that model. Their time courses
    are the reference's word activations regressed on the atlas's maps; the
    candidates' networks are fitted on the texts as always, as many as the
    atlas has. The atlas's networks were found on other texts (WikiText-2),
    so the reference itself then scores below 1 on ``fbn`` (list it among
    the candidates to see its ceiling); ``cka`` is unchanged.

    Everything is checked before any forward pass: the parameters, the
    texts, the device and dtype, then every model is loaded (its weights
    freed again) to check its tokenizer (fast tokenizers only), its neurons
    and the words it reads, so that a model that cannot be loaded, a slow
    tokenizer or too few shared words (under ``5 * n_components``) is
    refused before any work. Each model given by name or path is then
    loaded a second time for its forward pass: one model's weights in
    memory at a time. A model listed twice (the reference as a candidate)
    runs once. Memory holds two word x word Gram matrices (float64:
    ``8 * n_words ** 2`` bytes each; a third while the cka null is drawn)
    and one model's word x neuron activations.

    Parameters
    ----------
    reference : str, Path or LoadedModel
        A model as :func:`llmfbn.load_model` takes it (a built-in name, a
        model folder, a pruned folder, a ``.gguf`` file, a cached hub id),
        or a model already loaded.
    candidates : sequence of str, Path or LoadedModel
        The models scored against ``reference``, in the table's order; the
        reference itself is scored only when listed.
    texts : str, Path or list of str
        A text file (one text per line; ``.jsonl``, ``.csv``, ``.tsv``: the
        ``text`` column) or the texts; empty texts are skipped.
    n_components : int, optional
        Networks per model (CanICA components). Default: the atlas's
        number of networks with an atlas, else 10.
    n_permutations : int, default 200
        Draws of each null.
    max_tokens : int, default 512
        Tokens each model reads per text, at most.
    batch_size : int, default 8
        Texts per forward pass.
    device : str, optional
        Where models given by name run (see :func:`llmfbn.load_model`);
        default ``"cpu"``. A LoadedModel runs where it is.
    model_dtype : {"float32", "bfloat16", "float16"}, optional
        Weight dtype of models given by name; default ``"float32"``. The
        activations are float32 whatever it is.
    random_state : int, default 0
        Seed of CanICA and of the nulls.
    reference_atlas : "auto", "none", str or Path, default "auto"
        Where the reference's networks come from. ``"auto"``: the built-in
        atlas of the reference's model (:data:`llmfbn.datasets.ATLASES`,
        matched by weights hash) when there is one and ``n_components`` is
        not given, else CanICA on the texts. ``"none"`` (or None): CanICA
        on the texts. A built-in atlas name or an atlas folder
        (:func:`llmfbn.io.write_atlas`): that atlas, which must be of the
        reference model (its grid and weights).
    scheduler : str, optional
        Run the models on a Dask cluster (:func:`llmfbn.cluster.connect`):
        ``"local:N"``, a scheduler's address (``"tcp://host:8786"``) or a
        scheduler file (``.json``). Every model must then be a name or path
        its workers load themselves; this process never loads weights (nor
        needs a GPU). A worker loads each model once to check it, as above,
        and each model is then one task that returns its time courses and
        Gram matrix (``8 * n_words ** 2`` bytes), scored here as without a
        scheduler: the same table, bit for bit, when the workers use the same
        kernels and torch threads. ``device`` and ``model_dtype`` are
        resolved and checked on the workers.
    verbose : int, default 0
        Progress messages and a progress bar per model when ``>= 1``.

    Returns
    -------
    pandas.DataFrame
        One row per candidate and method (``fbn`` then ``cka``), columns
        :data:`llmfbn.io.FINGERPRINT_COLUMNS`: ``reference``, ``candidate``
        (their names as given), ``method``, ``score``, ``p_value``,
        ``null_mean``, ``n_components``, ``n_words``, ``random_state``,
        ``reference_networks`` (``canica`` or ``atlas:<name>``).

    Raises
    ------
    ValueError
        A bad parameter; a model that cannot be loaded, has a slow
        tokenizer or fewer neurons than ``n_components`` (named); texts
        that give too few shared words (the file named); an atlas that is
        not of the reference model (the atlas named).
    TypeError
        A LoadedModel with ``scheduler`` (it cannot be sent to a worker).
    llmfbn.cluster.TaskFailedError
        With ``scheduler``: a model's task failed on its worker (the model
        named).
    FileNotFoundError
        A missing texts file.
    """
    import pandas as pd

    _check_params(n_components, n_permutations, max_tokens, batch_size, random_state)
    models, order = _models(reference, candidates)
    atlas = read_reference_atlas(reference_atlas)
    textset = read_texts(texts, input_format="lines") if isinstance(texts, (str, Path)) \
        else read_texts(texts)
    dtype = "float32" if model_dtype is None else model_dtype
    if scheduler is None:
        device = resolve_device("cpu" if device is None else device)
        check_dtype(dtype, device)
        engine = nullcontext(_InProcess(device, dtype, verbose))
    else:  # checked before it connects; each worker resolves the device and checks the dtype
        from llmfbn.fingerprint._cluster import on_cluster

        engine = on_cluster(scheduler, models, device, dtype, verbose)

    rows = {}
    with engine as run:
        # Every model's tokenizer checked and its tokens placed, before any forward pass.
        grids = []
        for model, (words, grid) in zip(models, run.words(models, textset.texts, max_tokens)):
            model.words = words
            grids.append(grid)
        if reference_atlas == "auto" and n_components is not None:
            reference_atlas = "none"  # a number of networks asked for: CanICA for all
        atlas = choose_reference_atlas(reference_atlas, atlas, grids[0], models[0].label)
        if n_components is None:
            n_components = DEFAULT_N_COMPONENTS if atlas is None else atlas.n_networks
        _check_neurons(models, grids, n_components)
        axis = shared_words(textset.texts, [model.words for model in models])
        _check_words(axis, models, textset, n_components)
        origin = "canica" if atlas is None else atlas.column
        log(f"fingerprint: {axis.n_words} words of {len(textset)} texts shared by "
            f"{len(models)} models; {n_components} networks each; the reference's from "
            f"{origin}", verbose)
        features, reference_features = {}, None
        for position, result in run.features(models, axis, n_components, batch_size,
                                             random_state, atlas, 0 in order):
            features[position] = result[:2]
            if position == 0:  # with an atlas, the reference's networks are the atlas's
                reference_features = result[:2] if atlas is None else (result[2], result[1])
            if reference_features is None:  # a candidate waits for the reference
                continue
            for done in sorted(p for p in features if p in order and p not in rows):
                rows[done] = _score_rows(reference_features, features[done], axis.lengths,
                                         n_permutations, random_state)
                log(f"{models[done].label}: " + ", ".join(
                    f"{m} {r['score']:.3f} (p {r['p_value']:.3g})"
                    for m, r in zip(METHODS, rows[done])), verbose)
            features = {}
    table = []
    for position in order:
        for method, row in zip(METHODS, rows[position]):
            table.append({"reference": models[0].label, "candidate": models[position].label,
                          "method": method, **row, "n_components": n_components,
                          "n_words": axis.n_words, "random_state": random_state,
                          "reference_networks": origin})
    return pd.DataFrame(table, columns=FINGERPRINT_COLUMNS)


def _score_rows(reference, candidate, lengths, n_permutations, random_state):
    """``[fbn row, cka row]``: score, p_value and null_mean of each method."""
    scores = (fbn_score(reference[0], candidate[0]), linear_cka(reference[1], candidate[1]))
    nulls = (fbn_null(reference[0], candidate[0], lengths, n_permutations,
                      np.random.default_rng([random_state, 0])),
             cka_null(reference[1], candidate[1], lengths, n_permutations,
                      np.random.default_rng([random_state, 1])))
    return [{"score": score, "p_value": p_value(score, null), "null_mean": float(null.mean())}
            for score, null in zip(scores, nulls)]
