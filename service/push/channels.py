"""Where a pushed message goes: a webhook (JSON POST with the ``Idempotency-Key`` header) or a JSONL file."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from service.settings import Settings


class DeliveryError(RuntimeError):
    """A send that did not succeed (HTTP status, timeout, connection); retried with backoff."""


class PushConfigError(ValueError):
    """A delivery option that is missing or invalid; the message names it (Chinese)."""


class Channel(Protocol):
    name: str

    def send(self, key: str, payload: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass
class WebhookChannel:
    """JSON POST to the enterprise service platform, with the ``Idempotency-Key`` header."""

    url: str
    timeout: float
    name: str = "webhook"

    def send(self, key: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key,
            "User-Agent": "policyfit-push/1"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (configured URL)
                response.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{type(reason).__name__}: {reason}"[:300]) from None

    def close(self) -> None:
        return None


@dataclass
class FileChannel:
    """Appends one JSON line per message (``idempotency_key`` first) and fsyncs it. Keys already in the
    file are not written again, so a deliverer killed after writing and before recording the outcome
    does not duplicate a line."""

    path: Path
    name: str = "file"
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with self.path.open("rb") as fh:
                for raw in fh:
                    try:
                        self._seen.add(json.loads(raw)["idempotency_key"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line from a crash: its message is sent again
            _terminate_last_line(self.path)

    def send(self, key: str, payload: dict[str, Any]) -> None:
        if key in self._seen:
            return
        line = json.dumps({"idempotency_key": key, **payload}, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._seen.add(key)

    def close(self) -> None:
        return None


def _terminate_last_line(path: Path) -> None:
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")


def make_channel(settings: Settings, *, channel: str | None = None, url: str | None = None,
                 out: Path | None = None) -> Channel:
    kind = channel or settings.push_channel
    if kind == "webhook":
        target = url or settings.push_webhook_url
        if not target:
            raise PushConfigError("webhook 渠道需要推送地址：--url 或 POLICYFIT_PUSH_WEBHOOK_URL")
        if not target.startswith(("http://", "https://")):
            raise PushConfigError(f"--url（推送地址）应以 http:// 或 https:// 开头，收到“{target}”")
        return WebhookChannel(target, settings.push_timeout_seconds)
    if kind == "file":
        return FileChannel(out or settings.push_export_path)
    raise PushConfigError(f"--channel 应为 webhook 或 file，收到“{kind}”")
