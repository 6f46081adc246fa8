"""A case's report as the panel shows it: HTML with the text query's words marked.
No Qt here (the HTML is what ``QTextBrowser`` renders).
"""

from __future__ import annotations

import html
import re

__all__ = ["MARK_COLOUR", "highlight_html", "query_words"]

#: the background of a highlighted word
MARK_COLOUR = "#ffe066"


def query_words(text: str) -> list[str]:
    """The words of a text query worth highlighting (two letters or more)."""
    return [w for w in re.findall(r"[\w-]+", text.lower()) if len(w) >= 2]


def highlight_html(text: str, query: str) -> str:
    """Report text as HTML with the query's words in ``<mark>`` (prefix match, any case)."""
    words = query_words(query)
    escaped = html.escape(text)
    if words:
        pattern = re.compile(
            r"\b(" + "|".join(re.escape(html.escape(w)) for w in sorted(words, key=len,
                                                                          reverse=True))
            + r")[\w-]*", re.IGNORECASE)
        escaped = pattern.sub(
            lambda m: f'<mark style="background-color:{MARK_COLOUR}">{m.group(0)}</mark>',
            escaped)
    return escaped.replace("\n", "<br/>")
