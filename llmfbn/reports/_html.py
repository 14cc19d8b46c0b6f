"""A self-contained HTML page: inline CSS, figures as base64 PNG, no scripts."""

import base64
import html
import io

__all__ = ["Section", "figure_html", "page", "table_html"]

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde2ea; --accent: #2f6db5; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #f5f7fa; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; color: #c5cbd6; font-size: 13px; }
nav { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 28px; display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 24px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 6px 22px 18px; margin: 18px 0; }
h2 { font-size: 19px; margin: 14px 0 6px; }
h3 { font-size: 15px; margin: 14px 0 4px; }
p.note, figcaption { color: var(--muted); font-size: 13px; }
figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left;
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card h3 { margin-top: 4px; }
code, .tokens { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.tokens { color: #333; white-space: pre-wrap; word-break: break-word; margin: 4px 0 0;
          padding-left: 16px; }
"""


class Section:
    """A titled part of the report; ``parts`` are HTML fragments."""

    def __init__(self, title, anchor):
        self.title = title
        self.anchor = anchor
        self.parts = []

    def add(self, fragment):
        self.parts.append(fragment)
        return self

    def note(self, text):
        return self.add(f'<p class="note">{html.escape(text)}</p>')

    def heading(self, text):
        return self.add(f"<h3>{html.escape(text)}</h3>")

    def to_html(self):
        body = "\n".join(self.parts)
        return (f'<section id="{self.anchor}">\n<h2>{html.escape(self.title)}</h2>\n'
                f"{body}\n</section>")


def _as_figure(obj):
    """A matplotlib Figure from a Figure, a nilearn display or an Axes."""
    if hasattr(obj, "savefig") and hasattr(obj, "axes") and hasattr(obj, "dpi"):
        return obj
    for attribute in ("frame_axes", "axes"):
        inner = getattr(obj, attribute, None)
        if inner is not None and hasattr(inner, "figure"):
            return inner.figure
    if hasattr(obj, "figure"):
        return obj.figure
    raise TypeError(f"Cannot find a matplotlib figure in {type(obj).__name__}.")


def figure_html(obj, caption=None, dpi=100, alt="figure"):
    """Embed a figure as a base64 PNG ``<figure>`` and close it."""
    import matplotlib.pyplot as plt

    figure = _as_figure(obj)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight",
                   facecolor=figure.get_facecolor())
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"{caption_html}</figure>")


def _cell(value):
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def table_html(rows, columns):
    """An HTML table of ``rows`` (dicts) with the given ``columns`` (keys)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>"
                     for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def page(title, subtitle, sections):
    """The whole document."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(s.to_html() for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
