"""A health probe cheap enough to run every few seconds in a container:

    python -m cmk_trio.rpckit.probe PORT [SERVICE]

asks the server on 127.0.0.1:PORT the standard gRPC health question (synchronously, with a
3 s deadline) and exits 0 only when it answers SERVING. Over mutual TLS when CMK_TLS_CERT,
CMK_TLS_KEY and CMK_TLS_CLIENT_CA are set, as they are for the service in the same
container: the probe presents the service's own certificate and checks the server's against
the CA, for the name `localhost`.

It imports grpc and the health stub only (not the CLI, which `cmk health` loads: 0.5 s of CPU
a probe, against a few tens of milliseconds here)."""

from __future__ import annotations

import os
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEADLINE_S = 3.0


def probe(port: int, service: str = "", env: dict[str, str] | None = None) -> str:
    """The serving status's name, or UNREACHABLE (CODE)."""
    env = dict(os.environ) if env is None else env
    target = f"127.0.0.1:{port}"
    cert, key, ca = (env.get(name) for name in ("CMK_TLS_CERT", "CMK_TLS_KEY", "CMK_TLS_CLIENT_CA"))
    if cert and key and ca:
        with open(ca, "rb") as a, open(key, "rb") as k, open(cert, "rb") as c:
            creds = grpc.ssl_channel_credentials(a.read(), k.read(), c.read())
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    else:
        channel = grpc.insecure_channel(target)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE_S)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # a call's error is also a Call
        return f"UNREACHABLE ({code.name})"
    finally:
        channel.close()


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2 or not (argv[0].isascii() and argv[0].isdigit()):
        print("usage: python -m cmk_trio.rpckit.probe PORT [SERVICE]", file=sys.stderr)
        return 2
    status = probe(int(argv[0]), argv[1] if len(argv) > 1 else "")
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
