"""Datetimes to and from google.protobuf.Timestamp, as every API module needs them."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason


def to_timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for an aware datetime, or None (the field stays unset)."""
    if when is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


FIRST_SECOND = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
LAST_SECOND = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def from_timestamp(field: str, stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime from a caller's Timestamp; one outside years 1-9999 (which no
    datetime can hold) or with nanos out of range is refused as the field's bad value."""
    if not (FIRST_SECOND <= stamp.seconds <= LAST_SECOND and 0 <= stamp.nanos < 1_000_000_000):
        raise invalid_field(field, Reason.FIELD_INVALID, "must be a time between years 1 and 9999")
    return stamp.ToDatetime(tzinfo=UTC)
