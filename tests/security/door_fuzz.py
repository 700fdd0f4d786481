"""A structure-aware fuzzer for the trio's HTTP doors and its CONNECT proxy (the engine;
tests/security/test_door_fuzz.py runs it). Requests are written as raw bytes on a socket of
their own (TLS when the door has it), so that what no HTTP client would send is sent:

    key vault door   the JSON body of each operation with one field made hostile (every wrong JSON
                     type, huge, deep, odd numbers), bodies that are no JSON, huge or mis-framed;
                     api-version missing, bad, repeated; paths with .., %2f, //, NUL, long or
                     Unicode names; Host headers missing, an IP, another suffix, upper case, with
                     a port, more labels, twice; odd methods; header floods and odd Authorization
    token endpoint   form bodies with fields missing, repeated, odd or huge; other grants, scopes
                     and content types; Basic credentials that are not; odd tenants in the path
    CONNECT proxy    odd CONNECT lines, targets and ports, absolute-form requests, no CONNECT,
                     huge heads, pipelined bytes

Every choice comes from one random.Random (CMK_FUZZ_SEED). An input is a `Probe`: the bytes,
and whether an answer is due (a complete request within the limits: always, here; the slow
heads and bodies are separate). What is asserted of the answers is the test's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ANSWER_GUARD_S = 15.0
"""How long a probe waits for its answer: a guard against a hang, not a speed claim (the door's
own body timeout is 5 s)."""

ODD_JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 2**64, -(2**63) - 1, 1e308, "", "x", "\u0000", "\u202e", "é" * 1000,
    "a" * 70_000, [], [1, "a"], {}, {"a": {"b": {}}}, ["x"] * 1000, "\u00b2", "RSA", "2048",
)  # fmt: skip
JSON_TYPES: tuple[Any, ...] = (None, True, 7, 1.5, "x", [], ["RSA"], {}, {"a": 1})
"""A value of each JSON type, for the sweep."""
RAW_NUMBERS = ("1e309", "-1e309", "NaN", "Infinity", "-0", "1" * 5000, "0x10", "01")
"""Numbers as JSON text that Python's json reads oddly (or not at all)."""
ODD_NAMES = (
    "..", ".", "%2e%2e", "a%2fb", "a%2Fb", "%00", "a%00b", "%", "%zz", "a" * 127, "a" * 128, "a" * 2000,
    "%E2%80%AE", "%C3%A9", "%F0%9F%98%80", "%FF%FE", "CMK", "cmk%20", "-", "--", "_", "a.b", "~", "%5C",
    "a;b", "a,b", "*", "con", "%0d%0aX-Injected:%201",
)  # fmt: skip
ODD_VERSIONS = ("", "7.6", "2025-07-01", "7.0", "1999-01-01", "7.6-preview.2", "7.6&api-version=7.5",
                "%00", "a" * 5000, "%C2%B2", " 7.6", "7.6 ")  # fmt: skip
ODD_METHODS = ("OPTIONS", "HEAD", "TRACE", "PROPFIND", "CONNECT", "get", "Get", "PUTT", "M" * 300, "DELETE",
               "PATCH", "POST", "GET", "PUT", "G\x00T", "BREW")  # fmt: skip


@dataclass
class Probe:
    """One input: its kind (for the counts), its bytes, and what it writes (for the store check)."""

    kind: str
    data: bytes
    writes: bool = True
    note: str = ""


@dataclass
class Reply:
    """What came back: the status (None: the connection closed with no answer), the body, and
    whether it came within the guard."""

    status: int | None
    head: bytes = b""
    body: bytes = b""
    timed_out: bool = False

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def client_tls() -> ssl.SSLContext:
    """TLS without checking the door's certificate: the fuzzer tests what is behind TLS."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def exchange(
    host: str, port: int, data: bytes, tls: ssl.SSLContext | None, guard: float = ANSWER_GUARD_S
) -> Reply:
    """Send `data` on a connection of its own and read the whole answer (until the server closes)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), guard)
    except (OSError, TimeoutError) as exc:
        raise AssertionError(f"cannot connect to {host}:{port}: {exc!r}") from None
    chunks: list[bytes] = []
    timed_out = False
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(guard):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except TimeoutError:
        timed_out = True
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None
    return Reply(status, head, body, timed_out)


def request(method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes | None = None) -> bytes:
    """An HTTP/1.1 request as bytes (Content-Length set for a body; Connection: close)."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    if not any(k.lower() == "connection" for k, _ in headers):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + (body or b"")


# --- the key vault's door -------------------------------------------------------------------


@dataclass
class VaultDoorInputs:
    """What the door's inputs aim at: a vault with a key the token may use."""

    vault: str
    key: str
    version: str
    token: str
    wrapped: str
    suffix: str = "vault.azure.net"
    rng: random.Random = field(default_factory=random.Random)
    secret: str = "fz-secret"
    secret_version: str = ""
    backup: str = ""
    """A backup of the key, base64url: a restore of it is refused (the key is there)."""

    @property
    def host(self) -> str:
        return f"{self.vault}.{self.suffix}"

    def operations(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """(method, path, valid body) of each operation (rotate, create and import make keys:
        their bodies are mutated so that they rarely pass)."""
        k, v, s, sv = self.key, self.version, self.secret, self.secret_version
        return [
            ("POST", f"/keys/fz-{self.rng.randrange(10**6)}/create", {"kty": "RSA-X", "key_size": 2048}),
            ("PUT", f"/keys/fz-{self.rng.randrange(10**6)}", {"key": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}),
            ("GET", f"/keys/{k}", None), ("GET", f"/keys/{k}/{v}", None), ("GET", "/keys", None),
            ("GET", f"/keys/{k}/versions", None), ("GET", "/deletedkeys", None), ("GET", f"/deletedkeys/{k}", None),
            ("PATCH", f"/keys/{k}/{v}", {"attributes": {"enabled": True}, "tags": {"a": "b"}, "key_ops": ["wrapKey",
             "unwrapKey", "encrypt", "decrypt"]}),
            ("POST", f"/keys/{k}/{v}/wrapkey", {"alg": "RSA-OAEP-256", "value": "AAAA"}),
            ("POST", f"/keys/{k}/{v}/unwrapkey", {"alg": "RSA-OAEP-256", "value": self.wrapped}),
            ("POST", f"/keys/{k}/{v}/encrypt", {"alg": "RSA-OAEP", "value": "AAAA"}),
            ("POST", f"/keys/{k}/{v}/decrypt", {"alg": "RSA1_5", "value": self.wrapped}),
            ("POST", f"/deletedkeys/{k}/recover", None), ("DELETE", f"/deletedkeys/{k}-gone", None),
            ("DELETE", f"/keys/{k}-none", None),
            ("POST", f"/keys/{k}/{v}/sign", {"alg": "PS256", "value": "A" * 43}),
            ("POST", f"/keys/{k}/{v}/verify", {"alg": "RS256", "digest": "A" * 43, "value": "AAAA"}),
            ("POST", f"/keys/{k}/backup", None), ("POST", "/keys/restore", {"value": self.backup}),
            ("GET", f"/keys/{k}/rotationpolicy", None),
            ("PUT", f"/keys/{k}/rotationpolicy", {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"},
             "action": {"type": "Rotate"}}], "attributes": {"expiryTime": "P2Y"}}),
            ("PUT", f"/secrets/{s}", {"value": "fz", "contentType": "text/plain", "attributes": {"enabled": True},
             "tags": {"a": "b"}}),
            ("GET", f"/secrets/{s}", None), ("GET", f"/secrets/{s}/{sv}", None), ("GET", "/secrets", None),
            ("GET", f"/secrets/{s}/versions", None),
            ("PATCH", f"/secrets/{s}/{sv}", {"contentType": "x", "attributes": {"enabled": True}, "tags": {}}),
            ("GET", "/deletedsecrets", None), ("GET", f"/deletedsecrets/{s}", None),
            ("POST", f"/deletedsecrets/{s}/recover", None), ("DELETE", f"/deletedsecrets/{s}-gone", None),
            ("DELETE", f"/secrets/{s}-none", None), ("POST", f"/secrets/{s}/backup", None),
            ("POST", "/secrets/restore", {"value": self.backup}),
        ]  # fmt: skip

    def headers(self, *, host: str | None = None, token: bool = True) -> list[tuple[str, str]]:
        found = [("Host", host if host is not None else self.host)]
        if token:
            found.append(("Authorization", f"Bearer {self.token}"))
        return found

    def sweep(self) -> list[Probe]:
        """Every field of every operation's body (and of its attributes), once with a value of each
        JSON type (the random inputs then try odder values): what a type check forgot shows in
        every run."""
        probes = []
        for method, path, body in self.operations():
            if body is None:
                continue
            names = set(body) if "alg" in body else {*body, "attributes", "tags", "key_ops"}
            for name in sorted(names):
                for value in JSON_TYPES:
                    sent = json.dumps(body | {name: value}).encode()
                    probes.append(Probe("type sweep", request(method, f"{path}?api-version=7.6", self.headers(), sent),
                                        True, name))  # fmt: skip
            for name in ("enabled", "nbf", "exp"):
                for value in JSON_TYPES:
                    sent = json.dumps(body | {"attributes": {name: value}}).encode()
                    probes.append(Probe("type sweep", request(method, f"{path}?api-version=7.6", self.headers(), sent),
                                        True, f"attributes.{name}"))  # fmt: skip
        return probes

    def probe(self) -> Probe:
        rng = self.rng
        kinds: list[tuple[str, Callable[[], Probe]]] = [
            ("json field", self._json_field), ("json body", self._json_body), ("api-version", self._api_version),
            ("path", self._path), ("host", self._host), ("method", self._method), ("headers", self._headers),
            ("framing", self._framing),
        ]  # fmt: skip
        weights = [6, 3, 2, 3, 2, 1, 2, 1]
        kind, make = rng.choices(kinds, weights)[0]
        made = make()
        made.kind = kind
        return made

    def _valid(self) -> tuple[str, str, dict[str, Any] | None]:
        return self.rng.choice(self.operations())

    def _json_field(self) -> Probe:
        rng = self.rng
        method, path, body = self._valid()
        body = dict(body or {"alg": "RSA-OAEP-256", "value": "AAAA"})
        field_name = rng.choice([*body, "attributes", "tags", "key_ops", "kty", "key_size", "value", "alg", "key"])
        if rng.random() < 0.3 and isinstance(body.get(field_name), dict):  # a field of a nested object
            inner = dict(body[field_name])
            inner[rng.choice([*inner, "enabled", "nbf", "exp", "kty", "n", "e", "d"])] = rng.choice(ODD_JSON_VALUES)
            body[field_name] = inner
            text = json.dumps(body)
        elif rng.random() < 0.25:  # a number Python's json reads oddly
            text = json.dumps(body | {field_name: "@@"}).replace('"@@"', rng.choice(RAW_NUMBERS))
        else:
            text = json.dumps(body | {field_name: rng.choice(ODD_JSON_VALUES)})
        raw = text.encode()
        note = f"{field_name}"
        return Probe("", request(method, f"{path}?api-version=7.6", self.headers(), raw), method != "GET", note)

    def _json_body(self) -> Probe:
        rng = self.rng
        method, path, _ = self._valid()
        if method == "GET":
            method, path = "POST", f"/keys/{self.key}/{self.version}/wrapkey"
        bodies = [
            b"", b"{", b"}", b"[]", b"null", b"1", b'"x"', b"{not json", b'{"alg": "RSA-OAEP", "alg": "RSA1_5", '
            b'"value": "AAAA"}', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"value": "\xff"}', b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"value": "' + b"A" * 60_000 + b'"}', b"x" * 70_000,
            b"{" + b'"k": 1,' * 20_000 + b'"z": 2}', b"\x00" * 100, b'{"alg": NaN, "value": Infinity}',
        ]  # fmt: skip
        body = rng.choice(bodies)
        if rng.random() < 0.05:
            body = b"x" * rng.choice((65_537, 1_000_000, 4_000_000))  # beyond the door's 64 KiB
        return Probe("", request(method, f"{path}?api-version=2025-07-01", self.headers(), body), True)

    def _api_version(self) -> Probe:
        rng = self.rng
        method, path, body = self._valid()
        choice = rng.randrange(4)
        if choice == 0:
            query = ""
        elif choice == 1:
            query = f"?api-version={rng.choice(ODD_VERSIONS)}"
        elif choice == 2:
            query = f"?api-version={rng.choice(ODD_VERSIONS)}&api-version={rng.choice(ODD_VERSIONS)}"
        else:
            query = f"?API-VERSION=7.6&maxresults={rng.choice(['0', '26', '-1', '%C2%B2', '1' * 30, ''])}"
        raw = json.dumps(body).encode() if body is not None else None
        return Probe("", request(method, path + query, self.headers(), raw), method != "GET")

    def _path(self) -> Probe:
        rng = self.rng
        name = rng.choice(ODD_NAMES)
        shapes = [
            ("GET", f"/keys/{name}"), ("GET", f"/keys/{name}/{name}"), ("POST", f"/keys/{name}/create"),
            ("POST", f"/keys/{self.key}/{name}/wrapkey"), ("POST", f"/keys/{self.key}/{self.version}/{name}"),
            ("GET", f"/keys/{self.key}/../../deletedkeys"), ("GET", f"//keys//{self.key}"), ("GET", "/keys/"),
            ("GET", f"/deletedkeys/{name}"), ("DELETE", f"/deletedkeys/{name}"), ("GET", f"/{name}"),
            ("GET", f"/keys%2f{self.key}"), ("GET", f"/keys/{self.key}%2f{self.version}"), ("GET", "/"),
            ("GET", f"/keys/{self.key}/{self.version}/" + "x/" * rng.randrange(1, 50)), ("GET", "*"),
            ("GET", f"https://{self.host}/keys"), ("GET", f"http://evil.example/keys/{self.key}"),
            ("GET", "/keys?" + "a=1&" * 2000), ("GET", f"/keys/{'é' * 50}"), ("GET", "/keys/\x7f"),
        ]  # fmt: skip
        method, path = rng.choice(shapes)
        separator = "&" if "?" in path else "?"
        body = b'{"kty": "RSA-X"}' if method == "POST" else None
        return Probe("", request(method, f"{path}{separator}api-version=7.6", self.headers(), body), method != "GET")

    def _host(self) -> Probe:
        rng = self.rng
        hosts = [
            None, "", "127.0.0.1", "[::1]", f"{self.vault}.vault.azure.net.evil.example", self.host.upper(),
            f"{self.host}:443", f"{self.host}:99999", f"{self.host}:", f"a.{self.host}", f".{self.suffix}",
            self.suffix, f"{self.vault}.{self.suffix}.", f"{self.vault}..{self.suffix}", "é." + self.suffix,
            f"{self.vault}%2e{self.suffix}", f"{self.vault}\x00.{self.suffix}", f"user@{self.host}",
            f"{'a' * 300}.{self.suffix}", f"{self.vault}.vault.azure.cn", "nothing-here." + self.suffix,
            "contoso-cmk.vault.azure.net",
        ]  # fmt: skip
        host = rng.choice(hosts)
        headers = self.headers(host=host) if host is not None else [("Authorization", f"Bearer {self.token}")]
        if rng.random() < 0.2:
            headers.append(("Host", rng.choice([h for h in hosts if h]) or "x"))  # two Host headers
        method, path, body = self._valid()
        raw = json.dumps(body).encode() if body is not None else None
        return Probe("", request(method, f"{path}?api-version=7.6", headers, raw), method != "GET")

    def _method(self) -> Probe:
        rng = self.rng
        _, path, body = self._valid()
        raw = json.dumps(body).encode() if body is not None and rng.random() < 0.5 else None
        return Probe("", request(rng.choice(ODD_METHODS), f"{path}?api-version=7.6", self.headers(), raw), True)

    def _headers(self) -> Probe:
        rng = self.rng
        method, path, body = self._valid()
        headers = self.headers(token=False)
        choice = rng.randrange(6)
        if choice == 0:
            headers += [(f"X-Flood-{i}", "v" * rng.randrange(1, 100)) for i in range(rng.choice((100, 500, 2000)))]
            headers.append(("Authorization", f"Bearer {self.token}"))
        elif choice == 1:
            headers.append(("Authorization", rng.choice([
                "Bearer", "Bearer ", "Bearer  \t", "Basic Zm9vOmJhcg==", "bearer " + self.token, "Bearer " + "a" * 8000,
                "Bearer " + "a" * 9000, "Bearer x.y.z", "Bearer " + self.token + "x", "PoP " + self.token,
                "Bearer " + self.token[:-1], "\u00e9", "Bearer \x00",
            ])))  # fmt: skip
        elif choice == 2:
            headers += [("Authorization", f"Bearer {self.token}"), ("Authorization", "Bearer other")]
        elif choice == 3:
            headers += [("Authorization", f"Bearer {self.token}"),
                        ("x-ms-client-request-id", "r" * rng.choice((10, 100, 9000))),
                        ("x-request-id", rng.choice(["\r", "é", "a" * 300, "../.."]))]  # fmt: skip
        elif choice == 4:
            headers += [("Authorization", f"Bearer {self.token}"), ("Content-Type", rng.choice(["text/plain",
                        "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                        "application/json; charset=utf-16", ""]))]  # fmt: skip
        else:
            headers += [
                ("Authorization", f"Bearer {self.token}"),
                ("X-Long", "h" * rng.choice((8000, 8190, 8191, 20_000))),
            ]
        raw = json.dumps(body).encode() if body is not None else None
        return Probe("", request(method, f"{path}?api-version=7.6", headers, raw), method != "GET")

    def _framing(self) -> Probe:
        rng = self.rng
        path = f"/keys/{self.key}/{self.version}/wrapkey?api-version=7.6"
        body = b'{"alg": "RSA-OAEP-256", "value": "AAAA"}'
        base = self.headers()
        choices = [
            request("POST", path, [*base, ("Transfer-Encoding", "chunked")], b"5\r\n{\"alg\r\n0\r\n\r\n"),
            request("POST", path, [*base, ("Transfer-Encoding", "chunked")], b"zz\r\n{}\r\n0\r\n\r\n"),
            request("POST", path, [*base, ("Transfer-Encoding", "chunked"), ("Content-Length", "3")], body),
            request("POST", path, [*base, ("Content-Length", "3"), ("Content-Length", "40")], body),
            request("POST", path, [*base, ("Content-Length", "-1")], body),
            request("POST", path, [*base, ("Content-Length", "1" * 30)], body),
            request("POST", path, [*base, ("Transfer-Encoding", "gzip, chunked")], b"0\r\n\r\n"),
            request("POST", path, [*base, ("Expect", "100-continue")], body),
            request("POST", path, [*base, ("Content-Encoding", "gzip")], body),
            request("GET", f"/keys/{self.key}?api-version=7.6", base).replace(b"HTTP/1.1", b"HTTP/1.0"),
            request("GET", f"/keys/{self.key}?api-version=7.6", base).replace(b"HTTP/1.1", b"HTTP/2.0"),
            request("GET", f"/keys/{self.key}?api-version=7.6", base).replace(b"\r\n", b"\n"),
            b"\r\n\r\n" + request("GET", "/keys?api-version=7.6", base),
            request("GET", "/keys?api-version=7.6", [*base, ("Connection", "keep-alive")]) * 2
            + request("GET", "/keys?api-version=7.6", base),  # pipelined, the last closing
            b"GET /keys HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\nConnection: close\r\nX: \x80\xff\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # TLS inside TLS
        ]  # fmt: skip
        return Probe("", rng.choice(choices), True)


# --- identity's token endpoint ----------------------------------------------------------------


@dataclass
class TokenInputs:
    """Form bodies for Entra's door: POST /{tenant}/oauth2/v2.0/token."""

    tenant: str
    client_id: str
    client_secret: str
    host: str
    rng: random.Random = field(default_factory=random.Random)

    def probe(self) -> Probe:
        rng = self.rng
        fields = [("grant_type", "client_credentials"), ("client_id", self.client_id),
                  ("client_secret", "wrong-" + self.client_secret[:8]),
                  ("scope", "https://vault.azure.net/.default")]  # fmt: skip
        tenant = self.tenant
        content_type = "application/x-www-form-urlencoded"
        headers: list[tuple[str, str]] = [("Host", self.host)]
        choice = rng.randrange(9)
        if choice == 0:
            fields.pop(rng.randrange(len(fields)))
        elif choice == 1:
            fields.append(rng.choice(fields))  # a field twice
        elif choice == 2:
            i = rng.randrange(len(fields))
            fields[i] = (fields[i][0], rng.choice([
                "", "a" * 70_000, "\u202e", "%zz", "a b", "x" * 5000, "\x00", "openid", "/.default", "password",
                "https://vault.azure.net/.default https://management.azure.com/.default", "authorization_code",
                "%"]))  # fmt: skip
        elif choice == 3:
            tenant = rng.choice(["common", "organizations", "..", "%2e%2e", "a" * 300, tenant.upper(),
                                 "00000000-0000-0000-0000-000000000000", "{" + tenant + "}", tenant + "%00",
                                 "é"])  # fmt: skip
        elif choice == 4:
            content_type = rng.choice(["application/json", "text/plain", "multipart/form-data; boundary=b", "",
                                       "application/x-www-form-urlencoded; charset=utf-16"])  # fmt: skip
        elif choice == 5:
            headers.append(("Authorization", rng.choice(["Basic !!!", "Basic " + "QQ==", "Basic Og==", "Bearer x",
                                                         "Basic " + "a" * 9000])))  # fmt: skip
        elif choice == 6:
            fields = [(k + rng.choice(["", "[]", "%00", " "]), v) for k, v in fields]
            headers = [(k, v + rng.choice(["", ":99999", ":", ":0"])) for k, v in headers]
            headers.append(("Content-Encoding", rng.choice(["gzip", "deflate", "br", "identity"])))
        body = "&".join(f"{k}={v}" for k, v in fields).encode("utf-8", "surrogateescape")
        if choice == 7:
            body = rng.choice([b"\xff\xfe", b"a" * 200_000, b"=" * 1000, b"&" * 5000, b"grant_type", b'{"a": 1}'])
        if choice == 8:
            method = rng.choice(["GET", "PUT", "DELETE", "OPTIONS", "TRACE"])
        else:
            method = "POST"
        if content_type:
            headers.append(("Content-Type", content_type))
        return Probe("token endpoint", request(method, f"/{tenant}/oauth2/v2.0/token", headers, body), True)


# --- the CONNECT proxy ----------------------------------------------------------------------


@dataclass
class ProxyInputs:
    """Heads for the CONNECT proxy. `canary` is a port on this machine that nothing may be
    tunnelled to; `routed` the names it tunnels (to stand-in doors)."""

    canary: int
    routed: Sequence[str]
    rng: random.Random = field(default_factory=random.Random)

    def probe(self) -> Probe:
        rng = self.rng
        c = self.canary
        name = rng.choice(self.routed)
        targets = [
            f"127.0.0.1:{c}", f"localhost:{c}", f"[::1]:{c}", f"{name}:{c}", f"{name}:443@127.0.0.1:{c}",
            f"127.0.0.1:{c}#{name}:443", f"{name}:443/127.0.0.1:{c}", f"{name}.:443", f"{name.upper()}:443",
            f"{name}:0443", f"{name}:443 ", f"{name}:+443", f"{name}:443\x00", f"{name}:4430", f"{name}:",
            f"{name}", f"a.{name}:443", f"{name}.evil.example:443", "evil.example:443", "*.vault.azure.net:443",
            "x.vault.azure.net:443", "management.azure.com:443", f"{name}:443:443", ":443", "[::1]:443",
            "0x7f000001:443", "2130706433:443", f"%31%32%37.0.0.1:{c}", "é.vault.azure.net:443", f"{name}:443",
            "a" * 300 + ".vault.azure.net:443", f"user:pass@{name}:443", "",
        ]  # fmt: skip
        target = rng.choice(targets)
        choice = rng.randrange(8)
        if choice == 0:  # absolute-form and origin-form requests (a forward proxy's), never served
            method = rng.choice(["GET", "POST", "OPTIONS", "HEAD", "PUT"])
            where = rng.choice([f"http://127.0.0.1:{c}/", f"http://{name}/keys", "/", "*"])
            head = f"{method} {where} HTTP/1.1\r\nHost: 127.0.0.1:{c}\r\n\r\n"
            return Probe("proxy: no CONNECT", head.encode("utf-8", "surrogateescape"), False)
        if choice == 1:
            method = rng.choice(["connect", "Connect", "CONNECT ", " CONNECT", "CONNECTX", "C\x00NNECT"])
            head = f"{method} {target} HTTP/1.1\r\n\r\n"
            return Probe("proxy: odd method", head.encode("utf-8", "surrogateescape"), False)
        if choice == 2:
            version = rng.choice(["HTTP/1.0", "HTTP/2", "HTTP/1.1 extra", "", "SPDY/3", "HTTP/1.", "http/1.1"])
            head = f"CONNECT {target} {version}\r\n\r\n"
            return Probe("proxy: odd version", head.encode("utf-8", "surrogateescape"), False)
        if choice == 3:  # huge heads (beyond 8 KiB) and many headers
            head = f"CONNECT {target} HTTP/1.1\r\n" + "X: " + "y" * rng.choice((100, 8000, 9000, 60_000)) + "\r\n\r\n"
            return Probe("proxy: huge head", head.encode("utf-8", "surrogateescape"), False)
        if choice == 4:  # bytes after the head (a client that does not wait for the 200)
            head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n" + "GET / HTTP/1.1\r\n\r\n"
            return Probe("proxy: pipelined", head.encode("utf-8", "surrogateescape"), False)
        if choice == 5:
            head = f"CONNECT {target} HTTP/1.1\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(300)) + "\r\n"
            return Probe("proxy: many headers", head.encode("utf-8", "surrogateescape"), False)
        if choice == 6:
            basic = "a" * rng.randrange(1, 200)
            head = f"CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Basic {basic}\r\nHost: 127.0.0.1:{c}\r\n\r\n"
            return Probe("proxy: headers", head.encode("utf-8", "surrogateescape"), False)
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        return Probe("proxy: target", head.encode("utf-8", "surrogateescape"), False)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
