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


def test_a_client_secret_that_names_its_id_is_redacted_whole():
    from cmk_trio.identity.crypto import new_client_secret
    from cmk_trio.rpckit.logs import redact

    secret = new_client_secret("0b5e6c1e-3d4f-4a5b-8c6d-7e8f9a0b1c2d")
    told = redact(f"got {secret} from the caller")
    assert told == f"got {REDACTED} from the caller", told
    assert secret.rsplit("~", 1)[1] not in told  # its random part above all
