"""WikiText's raw layout: headings are boundaries between articles and sections, not texts."""

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["WikiArticle", "is_wikitext_file", "parse_wikitext"]

#: A WikiText article title, `` = Title = `` (one ``=`` on each side).
WIKI_TITLE = re.compile(r"^ = ([^=].*) = $")
#: Any WikiText heading: `` = Title = ``, `` = = Section = = ``, ...
WIKI_HEADING = re.compile(r"^ =( =)* .* =( =)* $")
#: File names of the WikiText releases (``wiki.test.raw``, ``wiki.train.tokens``, ...).
WIKI_FILE = re.compile(r"^wiki\.[A-Za-z0-9_-]+\.(raw|tokens)$")


@dataclass
class WikiArticle:
    """One article of a WikiText file.

    Attributes
    ----------
    title : str or None
        The `` = Title = `` heading, stripped; None for lines before the first title.
    line : int
        0-based line of the title in the file (-1 when there is none).
    paragraphs : list of (int, str)
        ``(line, text)`` of each paragraph: a line that is neither blank nor a
        heading, stripped of its surrounding space (WikiText's own tokenisation,
        `` @-@ `` and `` , ``, is kept).
    """

    title: object
    line: int
    paragraphs: list = field(default_factory=list)


def is_wikitext_file(path):
    """True for the WikiText releases' file names (``wiki.test.raw``, ``wiki.valid.tokens``)."""
    return bool(WIKI_FILE.match(Path(path).name))


def parse_wikitext(lines):
    """Split WikiText lines into articles of paragraphs; headings and blank lines are dropped.

    Parameters
    ----------
    lines : iterable of str
        The file's lines (line ends are ignored).

    Returns
    -------
    articles : list of WikiArticle
        In file order; articles without any paragraph are kept (an empty
        ``paragraphs`` list).
    n_headings : int
        Heading lines read as boundaries (titles and section headings).
    """
    articles, n_headings = [], 0
    for number, line in enumerate(lines):
        line = line.rstrip("\r\n")
        title = WIKI_TITLE.match(line)
        if title:
            n_headings += 1
            articles.append(WikiArticle(title.group(1).strip(), number))
        elif WIKI_HEADING.match(line):
            n_headings += 1
        elif line.strip():
            if not articles:
                articles.append(WikiArticle(None, -1))
            articles[-1].paragraphs.append((number, line.strip()))
    return articles, n_headings
