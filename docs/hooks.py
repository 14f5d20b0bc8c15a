"""MkDocs hook: the configuration page's reference table, generated from the settings
tree when the docs are built (so it cannot drift from the code)."""

from __future__ import annotations

from typing import Any

MARK = "<!-- settings-reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARK not in markdown:
        return markdown
    from smoke_platform.config import reference_markdown

    return markdown.replace(MARK, reference_markdown())
