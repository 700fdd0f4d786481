"""Type aliases for gRPC objects whose stubs are generic."""

from __future__ import annotations

from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of any method (requests and responses are typed per method)."""
