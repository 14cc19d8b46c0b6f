"""Every kind of evaluation a user can name, with what it reads, in a user's words."""

from llmfbn.datasets._tasks import FORMATS, TASKS

__all__ = ["EVALUATION_KINDS"]

#: kind -> what it reads and measures. ``wikitext2`` and ``text``: perplexity
#: of a plain-text file; the built-in tasks of :data:`TASKS`; the user formats
#: of :data:`FORMATS` (``mc``, ``cloze``).
EVALUATION_KINDS = {
    "wikitext2": "perplexity of WikiText-2's wiki.test.raw",
    "text": "perplexity of a plain-text file, one paragraph per line",
    **{name: spec.description for name, spec in TASKS.items()},
    **{name: f"your {spec.description}" for name, spec in FORMATS.items()},
}
