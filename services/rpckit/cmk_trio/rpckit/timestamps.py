"""Datetimes to and from google.protobuf.Timestamp, as every API module needs them."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2


def to_timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for an aware datetime, or None (the field stays unset)."""
    if when is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime from a Timestamp."""
    return stamp.ToDatetime(tzinfo=UTC)
