"""Notifications: every event is logged; when a webhook URL is set it is also posted as
Slack-compatible JSON (`text` plus `blocks`, what Slack incoming webhooks, Mattermost and
most chat tools accept).

A notification never raises: a webhook that is down is logged and the caller goes on
(a run or the stream worker must not fail because the chat tool is unreachable).
Posting happens on a background thread so the stream worker's scoring loop never waits
for it; `close()` drains what is queued.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

LOG = logging.getLogger("smoke.notify")
LEVEL_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":fire:"}


def slack_payload(title: str, text: str, level: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body: a plain `text` fallback and Block Kit blocks with the fields."""
    header = f"{LEVEL_EMOJI.get(level, '')} *{title}*".strip()
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{header}\n{text}"}}
    ]
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(fields.items())[:10]
                ],
            }
        )
    return {"text": f"[{level}] {title}: {text}", "blocks": blocks}


@dataclass
class Notifier:
    webhook_url: str = ""
    timeout_s: float = 5.0
    source: str = "smoke-platform"
    sent: int = 0
    failed: int = 0
    _queue: queue.Queue[dict[str, Any] | None] | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def notify(
        self, title: str, text: str, level: str = "info", background: bool = False, **fields: Any
    ) -> bool:
        """Log the event; post it when a webhook is set. True when posted (or queued)."""
        log_level = logging.WARNING if level in ("warning", "critical") else logging.INFO
        shown = " ".join(f"{k}={v}" for k, v in fields.items())
        LOG.log(log_level, "%s: %s%s", title, text, f" ({shown})" if shown else "")
        if not self.webhook_url:
            return False
        payload = slack_payload(title, text, level, {"source": self.source, **fields})
        if background:
            self._start()
            assert self._queue is not None
            self._queue.put(payload)
            return True
        return self._post(payload)

    def _post(self, payload: dict[str, Any]) -> bool:
        try:
            resp = httpx.post(self.webhook_url, json=payload, timeout=self.timeout_s)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            self.failed += 1
            LOG.error("webhook post failed (%s): %s", type(exc).__name__, exc)
            return False
        self.sent += 1
        return True

    def _start(self) -> None:
        if self._thread is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._drain, name="notifier", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        assert self._queue is not None
        while (payload := self._queue.get()) is not None:
            self._post(payload)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, then stop the background thread."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None
