"""The poison-pill guard: no message, known or not, can hold a partition.

Decoding and validating one message never raises (`Processor.validate` turns every failure
into that message's dead letter), but a message could still take down the batch around it
in a way nobody foresaw: a bug in scoring, a library that crashes the process on one input.
Then every restart would read the same batch and fail again, and the partition would stop.

So before the worker processes a batch it records, per partition, the first and last
offset it is trying and how many times a batch starting there was begun (a small JSON file
per partition under `_attempts/`, written before the work, so a crash counts as well as an
exception). A batch that has started twice from the same offset without finishing makes
the partition *suspect* up to the last offset those attempts held: the worker then takes
that range one message at a time, each in a transaction of its own. A single message whose
own attempt has failed twice is given up: it goes to the dead-letter topic with reason
`poison` and the partition moves on. A message that succeeds alone is processed as ever,
so the guard dead-letters only what fails on its own, never a neighbour.

Failures of infrastructure (broker, disk, memory) are not counted: the worker takes the
attempt back and ends, and its supervisor restarts it; a full disk must never turn good
readings into dead letters. What this cannot tell apart: a process killed from outside
(SIGKILL, OOM) twice while one message was being processed alone.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streaming.processor import InMessage

MAX_FAILURES = 2  # attempts of the same batch (or message) that did not finish


@dataclass
class Attempt:
    first: int  # the first offset of the partition's messages being tried
    last: int  # the last offset any attempt from `first` held
    tries: int  # attempts begun from `first` with this shape (one message or several)
    suspect_until: int = -1  # offsets up to here are tried one message at a time
    error: str = ""  # what the last failed attempt raised ("" if the process ended)
    topic_id: str | None = None

    @property
    def single(self) -> bool:
        return self.first == self.last


@dataclass
class Step:
    """Messages to process together in one transaction; `poisoned` ((partition, offset) ->
    why) are given up and dead-lettered unread."""

    messages: list[InMessage]
    poisoned: dict[tuple[int, int], str]


class PoisonGuard:
    def __init__(self, root: str | Path, topic: str, max_failures: int = MAX_FAILURES) -> None:
        self.root = Path(root) / "_attempts"
        self.topic = topic
        # The topic's Kafka id: offsets restart at 0 in a new incarnation of the topic, and
        # a record of the old one must not count against the new one's first batch.
        self.topic_id: str | None = None
        self.max_failures = max_failures
        self.attempts: dict[int, Attempt] = {}

    def _path(self, partition: int) -> Path:
        return self.root / f"{self.topic}-p{partition}.attempt.json"

    # -- partition ownership -------------------------------------------------------------
    def load(self, partition: int) -> None:
        """The partition's attempt record (when it was assigned to this worker)."""
        path = self._path(partition)
        self.attempts.pop(partition, None)
        try:
            rec = Attempt(**json.loads(path.read_text()))
        except FileNotFoundError:
            return
        except (ValueError, TypeError):  # a record cut short: start counting again
            return
        if rec.topic_id == self.topic_id:
            self.attempts[partition] = rec

    def drop(self, partition: int) -> None:
        self.attempts.pop(partition, None)

    # -- planning ------------------------------------------------------------------------
    def plan(self, fresh: list[InMessage]) -> list[Step]:
        """`fresh` as steps: one for the partitions with nothing suspect, then, per suspect
        partition, its suspect range one message a step and the rest in one last step."""
        by_partition: dict[int, list[InMessage]] = defaultdict(list)
        for m in fresh:
            by_partition[m.partition].append(m)
        calm: list[InMessage] = []
        singles: list[Step] = []
        after: list[InMessage] = []
        for partition, msgs in by_partition.items():
            msgs.sort(key=lambda m: m.offset)
            until = self._suspect_until(partition, msgs[0].offset)
            if until < msgs[0].offset:
                calm.extend(msgs)
                continue
            for m in msgs:
                if m.offset > until:
                    after.append(m)
                    continue
                poisoned = {}
                if self._gave_up(partition, m.offset):  # wherever the step starts
                    poisoned[(partition, m.offset)] = self._why(partition)
                singles.append(Step([m], poisoned))
        steps = [Step(calm, {})] if calm else []
        return [*steps, *singles, *([Step(after, {})] if after else [])]

    def _suspect_until(self, partition: int, first: int) -> int:
        rec = self.attempts.get(partition)
        if rec is None:
            return -1
        if rec.first == first and rec.tries >= self.max_failures:
            rec.suspect_until = max(rec.suspect_until, rec.last)
        return rec.suspect_until

    def _gave_up(self, partition: int, offset: int) -> bool:
        rec = self.attempts.get(partition)
        return bool(rec and rec.first == offset and rec.single and rec.tries >= self.max_failures)

    def _why(self, partition: int) -> str:
        rec = self.attempts[partition]
        last = rec.error or "the worker process ended while processing it"
        return (
            f"processing this message alone failed {rec.tries} times (last: {last}); "
            "given up so that the partition moves on"
        )

    # -- attempts ------------------------------------------------------------------------
    def begin(self, step: Step) -> None:
        """Record that `step` is being tried (before any of its work: a crash counts)."""
        for partition, (first, last) in _ranges(step.messages).items():
            if (partition, first) in step.poisoned:
                continue  # not tried: given up
            rec = self.attempts.get(partition)
            if rec is not None and last < rec.first:
                # Wholly before an unfinished attempt: the replay of batches that finished
                # before the crash (their table commits were still pending); the count of
                # the attempt that crashed stands for when the partition gets back to it.
                continue
            same = rec is not None and rec.first == first and rec.single == (first == last)
            if rec is not None and same:
                rec.tries, rec.last = rec.tries + 1, max(rec.last, last)
            else:
                until = rec.suspect_until if rec is not None else -1
                rec = Attempt(first, last, 1, until, topic_id=self.topic_id)
            rec.error = ""
            self.attempts[partition] = rec
            self._write(partition)

    def failed(self, step: Step, exc: BaseException) -> None:
        """`step` raised `exc` (a processing failure): remember what, for the dead letter."""
        for partition in _ranges(step.messages):
            rec = self.attempts.get(partition)
            if rec is not None:
                rec.error = f"{type(exc).__name__}: {str(exc)[:500]}"
                self._write(partition)

    def take_back(self, step: Step) -> None:
        """`step` failed for a reason outside the messages (broker, disk): not counted."""
        for partition in _ranges(step.messages):
            rec = self.attempts.get(partition)
            if rec is not None and rec.tries > 0:
                rec.tries -= 1
                # the disk may be what failed; the count in memory is right
                with contextlib.suppress(OSError):
                    self._write(partition)

    def _write(self, partition: int) -> None:
        """Write-and-rename without fsync: the count must survive the process, not the host."""
        path = self._path(partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self.attempts[partition])))
        os.replace(tmp, path)


def _ranges(msgs: list[InMessage]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for m in msgs:
        first, last = out.get(m.partition, (m.offset, m.offset))
        out[m.partition] = (min(first, m.offset), max(last, m.offset))
    return out


def describe(step: Step) -> dict[str, Any]:
    """For logs: the partitions and offsets of a step."""
    return {f"p{p}": f"{a}-{b}" for p, (a, b) in _ranges(step.messages).items()}
