"""A small Markdown report builder that saves matplotlib figures next to the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


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
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        path.write_text(self.markdown(), encoding="utf-8")
        return path
