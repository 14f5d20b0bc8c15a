"""`smoke backup` / `smoke restore`: everything the platform keeps, in one archive.

Parts (each a folder the settings name, resolved under SMOKE_HOME when relative):

- `bentoml`: the model store and the bentos (`$BENTOML_HOME`: `models/`, `bentos/`);
- `dagster`: the Dagster instance (`$DAGSTER_HOME`): its SQLite databases copied with
  SQLite's online backup (a consistent copy while Dagster runs), its other files as
  they are;
- `data`: the asset store (`SMOKE_DATA_DIR`), `reports`, `stream` (the worker's tables
  and partition state), `spark` (the window query's checkpoint) and `windowed` (its
  output). Each Delta table is copied at one version (its log up to it and the files it
  reads: consistent while the worker writes), after the partition state, so a table is
  never behind the state. The checkpoint is copied as its last commit left it (later
  files are left out), and the windows table at the version holding exactly the batches
  it committed: restored into an empty root, the query runs the next batch and writes
  it, none twice, none skipped.

An archive is a gzip tar with `manifest.json` first. Restore writes into empty folders
only; over existing ones only when told, by naming the root (`--replace <SMOKE_HOME>`),
and then it adds and overwrites files, never deletes any.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smoke_platform.core.settings import ToolHomes, home, under_home
from smoke_platform.errors import UserError

FORMAT = 1
# The parts whose folder is a tool's own variable (a backup with another value than the
# runs had finds nothing there).
_TOOL_HOMES = {"bentoml": "BENTOML_HOME", "dagster": "DAGSTER_HOME"}
# BentoML's scratch folders: rebuilt on start (the metrics folder is emptied every time).
SKIP = {"prometheus_multiproc_dir", "tmp", ".cache"}


@dataclass(frozen=True)
class Part:
    name: str
    path: Path


def parts() -> list[Part]:
    """The folders a backup holds, as this environment's settings name them (the Spark
    checkpoint before the windows table: see `_windows_version`)."""
    from smoke_platform.core.settings import SparkSettings
    from smoke_platform.defs.common.resources import PlatformSettingsResource, bind

    settings = bind(PlatformSettingsResource, resolved=True)
    tools = ToolHomes()
    if tools.bentoml_home is None or tools.dagster_home is None:
        raise RuntimeError("BENTOML_HOME and DAGSTER_HOME are set by `smoke` before a backup")
    folders = [
        ("bentoml", tools.bentoml_home),
        ("dagster", tools.dagster_home),
        ("data", under_home(settings.data_dir)),
        ("reports", under_home(settings.reports_dir)),
        ("stream", settings.stream_root),
        ("spark", under_home(SparkSettings().spark_checkpoint_dir)),
        ("windowed", settings.windowed_root),
    ]
    return [Part(name, Path(path).resolve()) for name, path in folders]


def _postgres_instance(dagster_home: Path) -> bool:
    config = dagster_home / "dagster.yaml"
    return config.exists() and "postgres" in config.read_text().lower()


def _stage(
    part: Part,
    into: Path,
    nested: list[Path],
    at: dict[Path, int] | None = None,
    keep: Callable[[Path], bool] | None = None,
) -> tuple[int, dict[str, int]]:
    """Copy `part` into `into` (databases through SQLite's backup, Delta tables at one
    version: their newest, or the one `at` names, -1 for none), leaving out the `nested`
    folders of other parts (the stream's tables live under the data folder by default:
    copied once, by their own part, at one version) and files `keep` refuses (by path
    relative to the part); the files copied and each table's version. A file its writer
    removed between the listing and its copy (a superseded checkpoint file) is left out."""
    from streaming.table_maintenance import copy_table, tables_under
    from streaming.tables import is_table

    tables = {"": part.path} if is_table(part.path) else dict(tables_under(part.path))
    tables = {n: t for n, t in tables.items() if not any(t.is_relative_to(x) for x in nested)}
    count = 0
    for source in sorted(part.path.rglob("*")):
        relative = source.relative_to(part.path)
        if SKIP & set(relative.parts) or not source.is_file():
            continue
        if keep is not None and not keep(relative):
            continue
        if any(source.is_relative_to(t) for t in [*tables.values(), *nested]):
            continue  # below, at one version
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".db":
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
        else:
            try:
                shutil.copy2(source, target)
            except FileNotFoundError:
                continue
        count += 1
    # After the partition state (above): a table is then never behind the state that
    # says what it holds; a restored worker replays the difference into it.
    versions = {}
    for name, path in tables.items():
        version = (at or {}).get(path)
        if version == -1:
            continue  # nothing of it belongs to the copy
        versions[f"{part.name}/{name}".rstrip("/")], n = copy_table(path, into / name, version)
        count += n
    return count, versions


def backup(out: Path, echo=print) -> dict:  # type: ignore[no-untyped-def]
    """Write the archive `out` (refusing to overwrite a file); returns its manifest."""
    if out.exists():
        raise UserError(f"{out} exists: choose a new file name (a backup never overwrites)")
    chosen = parts()
    dagster = next(p for p in chosen if p.name == "dagster")
    if _postgres_instance(dagster.path):
        raise UserError(
            f"the Dagster instance in {dagster.path} is PostgreSQL: back it up with pg_dump "
            "(its run history lives in the database, not in this folder)"
        )
    manifest: dict = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory(prefix="smoke-backup-") as tmp:
        staging = Path(tmp)
        files: dict[str, int] = {}
        tables: dict[str, int] = {}
        checkpoint = next(p.path for p in chosen if p.name == "spark")
        done = -1
        for part in chosen:  # the checkpoint's part comes just before the windows table's
            if part.name == "spark":
                done = _last_commit(checkpoint)  # first: the cut its copy is held to
            at = (
                _windows_version(part.path, checkpoint, done, echo)
                if part.name == "windowed"
                else None
            )
            keep = functools.partial(_in_cut, done=done) if part.name == "spark" else None
            files[part.name], versions = (
                _stage(part, staging / part.name, _nested(part, chosen), at, keep)
                if part.path.is_dir()
                else (0, {})
            )
            tables |= versions
            echo(f"  {part.name:<8} {files[part.name]:>6} files  from {part.path}")
            if part.name in _TOOL_HOMES and not files[part.name]:
                echo(
                    f"  warning: nothing in {part.path}: is {_TOOL_HOMES[part.name]} the one "
                    "your runs used? (`make` sets it to the checkout's; set it as it was)"
                )
        for name, version in tables.items():
            echo(f"  table {name} at version {version}")
        manifest["files"] = files
        manifest["tables"] = tables
        manifest["champion"] = _champion()
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(staging / "manifest.json", arcname="manifest.json")
            for part in chosen:
                if (staging / part.name).is_dir():
                    tar.add(staging / part.name, arcname=part.name)
        partial.rename(out)  # a killed backup leaves a .partial, never a short archive
    return manifest


def _batch(name: str) -> int | None:
    """The batch or state version a checkpoint file is named by (`12`, `12.delta`,
    `.12.crc`), None for other files."""
    stem = name.lstrip(".").split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _newest(folder: Path) -> int:
    """The newest batch of a checkpoint's `commits` or `offsets` log (-1: none)."""
    found = map(_batch, os.listdir(folder)) if folder.is_dir() else []
    return max((n for n in found if n is not None), default=-1)


def _last_commit(checkpoint: Path) -> int:
    """The last batch the Spark checkpoint has committed (-1: none)."""
    return _newest(checkpoint / "commits")


def _in_cut(relative: Path, done: int) -> bool:
    """Whether a checkpoint file belongs to the checkpoint as batch `done` left it: the
    commits up to it, the offsets of the batch after it (planned: a restored query runs
    it again over the same offsets), the state versions up to `done + 1` (each written
    before its batch's commit). Later files, written while the copy ran, are left out."""
    n = _batch(relative.name)
    limit = {"commits": done, "offsets": done + 1, "state": done + 1}.get(relative.parts[0])
    return n is None or limit is None or n <= limit


def _windows_version(
    table: Path, checkpoint: Path, done: int, echo: Callable[[str], object]
) -> dict[Path, int] | None:
    """The windows table's version that matches the checkpoint's copy (batches up to
    `done`): the newest whose window-query transaction is at most `done` (-1: no version
    holds none of the later batches, copy nothing). A table with newer batches than the
    checkpoint has planned was written under an earlier checkpoint at this path (one
    removed and started again): copied at its newest, with a warning. None: the newest."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    from streaming.spark_job import window_app_id
    from streaming.tables import is_table

    if not is_table(table):
        return None
    app = window_app_id(checkpoint)
    dt = DeltaTable(str(table))
    version, newest = dt.version(), dt.transaction_version(app)
    if newest is None or newest <= done:
        return None
    planned = _newest(checkpoint / "offsets")
    if newest > planned:
        echo(
            f"  windowed: holds batch {newest} of {checkpoint}, which has planned only "
            f"{planned} (a checkpoint started again at that path): copied at its newest"
        )
        return None
    while version > 0:
        version -= 1
        try:
            dt.load_as_version(version)
        except DeltaError as exc:  # that version's log was cleaned up
            echo(f"  windowed: no version at batch {done} of {checkpoint} ({exc}): its newest")
            return None
        written = dt.transaction_version(app)
        if written is None or written <= done:
            return {table: version}
    echo(f"  windowed: every version holds a batch after {done}: left for the query to write")
    return {table: -1}


def _nested(part: Part, chosen: list[Part]) -> list[Path]:
    """The other parts' folders inside `part`'s."""
    mine = part.path.resolve()
    return [
        p.path
        for p in chosen
        if p is not part and p.path.resolve() != mine and p.path.resolve().is_relative_to(mine)
    ]


def _champion() -> str:
    try:
        import bentoml

        from smoke_platform.modelstore import CHAMPION

        return str(bentoml.models.get(CHAMPION).tag)
    except Exception:  # no champion yet: nothing to record
        return ""


def restore(archive: Path, replace: Path | None = None, echo=print) -> dict:  # type: ignore[no-untyped-def]
    """Bring `archive` back into this environment's folders; returns its manifest."""
    if not archive.is_file():
        raise UserError(f"no backup archive at {archive}")
    root = home().resolve()
    if replace is not None and replace.resolve() != root:
        raise UserError(
            f"--replace {replace} is not this root ({root}): name the SMOKE_HOME to restore over"
        )
    chosen = {p.name: p for p in parts()}
    busy = [p for p in chosen.values() if p.path.is_dir() and _holds_files(p.path)]
    if busy and replace is None:
        raise UserError(
            "not empty: "
            + ", ".join(str(p.path) for p in busy)
            + f". Restore into an empty root, or say --replace {root} to write over it"
        )
    try:
        return _extract(archive, chosen, echo)
    except (tarfile.TarError, KeyError, ValueError, EOFError, OSError) as exc:
        raise UserError(f"{archive} is not a readable smoke backup ({exc})") from None


def _extract(archive: Path, chosen: dict[str, Part], echo) -> dict:  # type: ignore[no-untyped-def]
    with tarfile.open(archive, "r:gz") as tar:
        manifest_member = tar.extractfile("manifest.json")
        if manifest_member is None:
            raise UserError(f"{archive} has no manifest.json: not a smoke backup")
        manifest = json.loads(manifest_member.read())
        if manifest.get("format") != FORMAT:
            raise UserError(
                f"{archive} is backup format {manifest.get('format')}, expected {FORMAT}"
            )
        for member in tar.getmembers():
            name, _, rest = member.name.partition("/")
            if name not in chosen or not rest:
                continue
            member.name = rest
            tar.extract(member, chosen[name].path, filter="data")  # no absolute or .. paths
    for name, count in manifest.get("files", {}).items():
        if name in chosen:
            echo(f"  {name:<8} {count:>6} files  into {chosen[name].path}")
    return manifest


def _holds_files(path: Path) -> bool:
    return any(
        f.is_file() and not SKIP & set(f.relative_to(path).parts) and f.name != "dagster.yaml"
        for f in path.rglob("*")
    )
