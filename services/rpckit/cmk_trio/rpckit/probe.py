"""A health probe cheap enough to run every few seconds in a container:

    python -m cmk_trio.rpckit.probe PORT [SERVICE]

asks the server on 127.0.0.1:PORT the standard gRPC health question (synchronously, with a
3 s deadline) and exits 0 only when it answers SERVING. Over mutual TLS when CMK_TLS_CERT,
CMK_TLS_KEY and CMK_TLS_CLIENT_CA are set, as they are for the service in the same
container: the probe presents the service's own certificate and checks the server's against
the CA, for the name `localhost`.

It imports grpc and the health stub only (not the CLI, which `cmk health` loads: 0.5 s of CPU
a probe, against a few tens of milliseconds here).

    python -m cmk_trio.rpckit.probe --proxy PORT

asks the CONNECT proxy (`cmk serve proxy`) on 127.0.0.1:PORT `GET /health` (plain HTTP, as
the proxy speaks) and exits 0 only when it answers SERVING: every door it routes to answers.

    python -m cmk_trio.rpckit.probe --https PORT

asks an HTTPS door on 127.0.0.1:PORT (Azure Resource Manager's, `cmk serve arm`) for its
cloud metadata, `GET /metadata/endpoints`, which needs no token, and prints SERVING for a 200:
the door listens and answers. Its certificate is checked against CMK_TLS_CLIENT_CA (the CA of
the container's own certificate) for the name `localhost`."""

from __future__ import annotations

import os
import socket
import ssl
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


def probe_proxy(port: int) -> str:
    """What the CONNECT proxy's health answer says (SERVING, NOT_SERVING: ...), or UNREACHABLE (WHY)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as conn:
            conn.settimeout(DEADLINE_S)
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
    except OSError as exc:
        return f"UNREACHABLE ({type(exc).__name__})"
    status, _, body = answer.partition(b"\r\n\r\n")
    said = body.decode(errors="replace").strip()
    return said if status.startswith(b"HTTP/1.1 200 ") and said == "SERVING" else said or "UNREACHABLE (no answer)"


def probe_https(port: int, env: dict[str, str] | None = None) -> str:
    """SERVING when the door answers its metadata with 200, else what went wrong."""
    env = dict(os.environ) if env is None else env
    context = ssl.create_default_context(cafile=env.get("CMK_TLS_CLIENT_CA") or None)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                conn.settimeout(DEADLINE_S)
                conn.sendall(b"GET /metadata/endpoints?api-version=2022-09-01 HTTP/1.1\r\nHost: localhost\r\n"
                             b"Connection: close\r\n\r\n")  # fmt: skip
                status_line = conn.recv(4096).split(b"\r\n", 1)[0]
    except (OSError, ssl.SSLError) as exc:
        return f"UNREACHABLE ({type(exc).__name__})"
    if status_line.startswith(b"HTTP/1.1 200 "):
        return "SERVING"
    return f"NOT_SERVING ({status_line.decode(errors='replace')[:64] or 'no answer'})"


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def main(argv: list[str]) -> int:
    flagged = len(argv) == 2 and argv[0] in {"--proxy", "--https"} and _number(argv[1])
    if not flagged and (not 1 <= len(argv) <= 2 or not _number(argv[0])):
        print("usage: python -m cmk_trio.rpckit.probe PORT [SERVICE] | --proxy PORT | --https PORT", file=sys.stderr)
        return 2
    if flagged:
        status = (probe_proxy if argv[0] == "--proxy" else probe_https)(int(argv[1]))
    else:
        status = probe(int(argv[0]), argv[1] if len(argv) > 1 else "")
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
