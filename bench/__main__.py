"""Run benchmark areas: `python -m bench` (all) or `python -m bench gen graph`."""

from __future__ import annotations

import importlib
import sys

AREAS = ("gen", "graph", "train", "serving", "stream", "spark", "tables")


def main(argv: list[str]) -> int:
    areas = argv or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(f"unknown benchmark area(s) {unknown}; choose from {list(AREAS)}", file=sys.stderr)
        return 2
    for area in areas:
        importlib.import_module(f"bench.bench_{area}").run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
