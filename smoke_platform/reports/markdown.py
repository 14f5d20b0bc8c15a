"""A small report builder: `report.md` with its matplotlib figures beside it, and
`report.html` with the same content and the figures embedded (one file that renders in
any browser); `report_metadata` gives Dagster both, charts included."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1f24; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: right; }}
th {{ background: #f6f8fa; }}
img {{ max-width: 100%; }}
code {{ background: #f6f8fa; padding: 0 .2rem; }}
</style></head>
<body>
{body}
</body></html>
"""


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported lazily: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class MarkdownReport:
    """Collects sections; `write` saves `report.md` and its PNGs into `directory`."""

    title: str
    directory: Path
    parts: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"{'#' * level} {text}\n")

    def text(self, text: str) -> None:
        self.parts.append(text.strip() + "\n")

    def table(self, frame: pd.DataFrame, index: bool = True) -> None:
        self.parts.append(frame.to_markdown(index=index, floatfmt=".4g") + "\n")

    def figure(self, fig: Any, name: str, caption: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        pyplot().close(fig)
        self.images.append(path)
        self.parts.append(f"![{caption}]({path.name})\n\n*{caption}*\n")
        return path

    def markdown(self) -> str:
        return f"# {self.title}\n\n" + "\n".join(self.parts)

    def write(self, name: str = "report.md") -> Path:
        """Write `name` (Markdown, figures beside it) and the self-contained HTML twin."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        text = self.markdown()
        path.write_text(text, encoding="utf-8")
        path.with_suffix(".html").write_text(to_html(self.title, text, self.directory))
        return path


def _inline_images(text: str, directory: Path) -> str:
    """Markdown whose local PNG links are data URIs (Dagster's UI and a lone HTML file
    cannot reach files beside the report)."""
    import base64
    import re

    def inline(match: re.Match[str]) -> str:
        image = directory / match["src"]
        if not image.is_file():
            return match[0]
        data = base64.b64encode(image.read_bytes()).decode()
        return f"![{match['alt']}](data:image/png;base64,{data})"

    return re.sub(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+\.png)\)", inline, text)


def to_html(title: str, text: str, directory: Path) -> str:
    import html

    import markdown

    body = markdown.markdown(_inline_images(text, directory), extensions=["tables"])
    return _HTML.format(title=html.escape(title), body=body)


def report_metadata(path: Path) -> dict[str, Any]:
    """Dagster metadata of a written report: the HTML file to open, the Markdown file, and
    the report itself with its charts (they show in the asset's page)."""
    import dagster as dg

    text = path.read_text(encoding="utf-8")
    return {
        "report_path": dg.MetadataValue.path(str(path.with_suffix(".html").resolve())),
        "report_markdown_path": dg.MetadataValue.path(str(path.resolve())),
        "report": dg.MetadataValue.md(_inline_images(text, path.parent)),
    }
