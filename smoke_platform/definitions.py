"""The Dagster code location: everything under `defs/`, with global policies applied once."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # The graph is small and each step is quick: one process beats a process per step
    # (4–8 s start-up each); production can override per job.
    return dg.Definitions.merge(loaded, dg.Definitions(executor=dg.in_process_executor))
