"""Structured logs: one JSON object per line, secrets redacted as a second line of defence."""

from __future__ import annotations

import io
import json
import logging

from cmk_trio.rpckit.logs import REDACTED, configure_logging


def test_json_lines_with_extras_and_redaction():
    stream = io.StringIO()
    configure_logging("identity", "DEBUG", stream)
    try:
        log = logging.getLogger("test")
        log.info(
            "signed in with eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln and cmk~abcdefghijklmnopqrstuvwxyz",
            extra={"client_secret": "hunter2", "tenant_id": "t1"},
        )
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(stream.getvalue())
    assert entry["service"] == "identity" and entry["level"] == "info" and entry["tenant_id"] == "t1"
    assert entry["client_secret"] == REDACTED
    assert "eyJ" not in entry["message"] and "cmk~" not in entry["message"]
