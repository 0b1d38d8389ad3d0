"""A lab's README as the learner page shows it: CommonMark (with tables) to HTML by ``markdown-it-py``, safe to insert.

The README is reviewed repository content, but the page still keeps raw HTML off (``html: False`` escapes it as
text), lets markdown-it's link validation drop ``javascript:``, ``vbscript:``, ``file:`` and most ``data:`` links,
and renders no images, so the page makes no request to anywhere else (its CSP refuses them too). The README's first
``# Title`` is left out (the page shows the lab's title) and every heading moves one level down, so the page has one
``<h1>``. Outside links open in a new tab with ``rel="noopener noreferrer"``; code blocks wrap, tables scroll in
a region the keyboard can reach.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.disable("image")
    return md


_MD = _parser()


def readme_html(text: str) -> Markup:
    """The README's HTML for the page (see the module docstring for what is changed)."""
    tokens = _MD.parse(text)
    tokens = _without_title(tokens)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + 1)}"
        if token.type == "inline" and token.children:
            for child in token.children:
                if child.type == "link_open" and str(child.attrGet("href") or "").startswith(("http://", "https://")):
                    child.attrSet("target", "_blank")
                    child.attrSet("rel", "noopener noreferrer")
    html = _MD.renderer.render(tokens, _MD.options, {})
    # Wide tables scroll inside a region a keyboard can reach (the page's other tables do the same).
    html = html.replace("<table>", '<div class="table-wrap" tabindex="0" role="region" aria-label="Table">'
                                   "<table>").replace("</table>", "</table></div>")
    return Markup(html)  # noqa: S704 - markdown-it escapes all text and raw HTML; the tags added above are fixed


def _without_title(tokens: list[Token]) -> list[Token]:
    """Drop a leading level-1 heading (three tokens: open, inline, close)."""
    if len(tokens) >= 3 and tokens[0].type == "heading_open" and tokens[0].tag == "h1":
        return tokens[3:]
    return tokens
