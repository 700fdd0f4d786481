"""Structured logging: one JSON object per line, and a filter that keeps secrets out.

Secrets are kept out in two ways: code never passes them to a logger, and, as a second
line of defence, the formatter replaces any field whose name says it holds a secret and any
string that looks like a JWT or a client secret of ours.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

from cmk_trio.rpckit.observe import current_call

_SECRET_FIELD = re.compile(r"(secret|password|token|credential|private|authorization|key_material)", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_CLIENT_SECRET = re.compile(r"cmk~[A-Za-z0-9_~=-]{20,}")  # (cmk~<secret id>~<random>, and older cmk~<random>)
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(value: object) -> object:
    """The value with anything secret-looking replaced."""
    if isinstance(value, str):
        return _CLIENT_SECRET.sub(REDACTED, _JWT.sub(REDACTED, value))
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_FIELD.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, service, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(redact(entry), default=str)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the call it was logged in (if any), and its
    verified caller (object and tenant id) once known."""

    def filter(self, record: logging.LogRecord) -> bool:
        facts = current_call()
        if facts is None:
            return True
        if not hasattr(record, "request_id"):
            record.request_id = facts.request_id
        if facts.caller_object_id and not hasattr(record, "caller_object_id"):
            record.caller_object_id = facts.caller_object_id
            record.caller_tenant_id = facts.caller_tenant_id
        return True


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record of the process as JSON lines to `stream` (stderr by default),
    each with the request id of the call it belongs to."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
