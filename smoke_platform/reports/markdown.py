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
        self.parts.append(markdown_table(frame, index=index) + "\n")

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


def readable(value: Any) -> str:
    """A number as a person reads it: whole numbers with thousands separators (60,000, not
    6e+04), four significant digits below 1,000, no exponent unless tiny; NaN as n/a."""
    import math
    import numbers

    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        return "n/a" if value is None else str(value)
    number = float(value)
    if math.isnan(number):
        return "n/a"
    if math.isinf(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    if abs(number) >= 1e-3:
        return f"{number:.4g}"
    return f"{number:.2e}"


def counts_text(counts: dict[Any, int]) -> str:
    """`{'warning': 2, 'critical': 1}` as "2 warning, 1 critical" (nothing: "none")."""
    return ", ".join(f"{n:,} {name}" for name, n in counts.items()) or "none"


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A Markdown table with readable numbers (`readable`), numbers aligned right."""
    import numbers

    shown = frame.copy()
    numeric = [
        all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in shown[c].dropna())
        for c in shown.columns
    ]
    for column in shown.columns:
        shown[column] = shown[column].map(readable)
    align = (["left"] if index else []) + ["right" if n else "left" for n in numeric]
    return shown.to_markdown(index=index, colalign=align, disable_numparse=True)


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
