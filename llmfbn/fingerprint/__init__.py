"""Model fingerprints: does a candidate model share a reference model's functional networks?

:func:`fingerprint` (``llmfbn fingerprint REFERENCE CANDIDATE... --texts FILE``)
scores each candidate against the reference on the same texts. Method:

1. **Words** (:func:`token_words`, :func:`shared_words`). The texts (one per
   line of a file, as ``llmfbn record --input-format lines`` reads them) are
   cut into whitespace words: the time axis every model shares, whatever its
   tokenizer. Each token belongs to the word holding its first
   non-whitespace character (a fast tokenizer's offset mapping; a slow
   tokenizer is refused), and a word's activation is the mean over its
   tokens; special tokens and tokens of whitespace only are dropped. Each
   model reads at most ``max_tokens`` tokens per text (fewer when its
   position limit is lower); the words from the first one that some model
   did not read whole are dropped for all, so the axis is identical.
2. **Activations** (:func:`word_activations`). The ``mlp`` signal (the
   input of each layer's MLP down projection, one value per neuron) of
   every layer, recorded in memory in float32 by
   :class:`llmfbn.recording.ActivationRecorder`, on the chosen device and
   dtype. A pruned model (an ``llmfbn prune`` folder) sits on its source
   model's grid: its present neurons only.
3. **Networks** (:func:`fit_networks`). Per model, each neuron standardised
   over the words, nilearn's CanICA with ``n_components`` components and
   ``random_state`` on the model's neuron grid (its mask, no smoothing),
   each layer's neurons in a canonical order (:func:`canonical_order`: by
   mean, then standard deviation) so that permuting them changes nothing.
   The time courses (words x components) are the standardised activations
   regressed on the component maps (least squares, as nilearn's
   ``NiftiMapsMasker``), z-scored.
4. **fbn score** (:func:`fbn_score`). The reference's time courses matched
   one to one to the candidate's (Hungarian algorithm,
   ``scipy.optimize.linear_sum_assignment``, on |Pearson r|); the score is
   the mean matched |r|, in [0, 1], 1 for the reference itself. Networks
   are matched by what they do over the same words, never by neuron index,
   so a permutation of a layer's neurons (the same function) does not
   change the score, and a candidate of another architecture or width can
   be scored. Null (:func:`fbn_null`): each candidate time course shifted
   circularly within each text by a random offset, which keeps the texts'
   structure and breaks only the alignment of the two models' words.
5. **cka score** (:func:`linear_cka`), the representation baseline (as in
   REEF, Zhang et al., 2025): linear CKA (Kornblith et al., 2019) of the
   two models' word x neuron activations, centred, through word x word
   Gram matrices (the widths may differ; invariant to a permutation of
   neurons), in [0, 1]. Null (:func:`cka_null`): the candidate's words
   permuted within each text.

6. **An atlas as the reference's networks** (``reference_atlas``,
   :mod:`llmfbn.fingerprint._reference`). Instead of CanICA on the texts,
   the reference's networks may be an atlas's fixed maps of the reference
   model (:func:`llmfbn.datasets.load_atlas`; ``"auto"`` takes the built-in
   ``"smollm2-135m"`` atlas for the default model): their time courses are
   the reference's standardised word activations regressed on the maps
   (:func:`atlas_time_courses`); the candidates' networks are fitted as in
   step 3, as many as the atlas has.

Each null has ``n_permutations`` draws; ``p_value = (1 + #(null >= score)) /
(1 + n_permutations)`` (:func:`p_value`), reported with the null's mean. The
same inputs and ``random_state`` give the same table, bit for bit.

The nulls test whether two models' networks follow the same words more
than chance, not whether they are the same model: two unrelated models
reading the same texts share word-driven structure and may both reach the
smallest p-value; the scores tell them apart.
"""

from llmfbn.fingerprint._activations import model_grid, word_activations
from llmfbn.fingerprint._align import (
    TokenWords,
    WordAxis,
    check_fast_tokenizer,
    shared_words,
    token_words,
    word_spans,
)
from llmfbn.fingerprint._fingerprint import (
    DEFAULT_N_COMPONENTS,
    METHODS,
    MIN_WORDS_PER_COMPONENT,
    fingerprint,
)
from llmfbn.fingerprint._networks import (
    ModelNetworks,
    canonical_order,
    fit_networks,
    standardize,
    time_courses,
)
from llmfbn.fingerprint._reference import (
    ReferenceAtlas,
    atlas_time_courses,
    choose_reference_atlas,
    read_reference_atlas,
)
from llmfbn.fingerprint._scores import (
    centred_gram,
    circular_shifts,
    cka_null,
    fbn_null,
    fbn_score,
    linear_cka,
    p_value,
    within_text_permutation,
)

__all__ = [
    "DEFAULT_N_COMPONENTS",
    "METHODS",
    "MIN_WORDS_PER_COMPONENT",
    "ModelNetworks",
    "ReferenceAtlas",
    "atlas_time_courses",
    "TokenWords",
    "WordAxis",
    "canonical_order",
    "centred_gram",
    "check_fast_tokenizer",
    "choose_reference_atlas",
    "circular_shifts",
    "cka_null",
    "fbn_null",
    "fbn_score",
    "fingerprint",
    "fit_networks",
    "linear_cka",
    "model_grid",
    "p_value",
    "read_reference_atlas",
    "shared_words",
    "standardize",
    "time_courses",
    "token_words",
    "within_text_permutation",
    "word_activations",
    "word_spans",
]
