"""The per-peer connection cap of gRPC listeners (issue 22, item 5): what a socket descriptor
holds, which connections are over a peer's cap, and closing only the socket that was counted.
The cap at work against a flood on a real gRPC server is in tests/security/test_listeners.py."""

from __future__ import annotations

import os
import socket

import pytest

from cmk_trio.rpckit.grpc_peers import Connection, PeerCap, connection_of, over_cap, shut_down, socket_descriptors


def test_the_newest_connections_of_a_peer_beyond_its_cap_are_the_ones_closed():
    table = [Connection(8080, "10.0.0.1", inode, seen) for inode, seen in ((50, 1), (10, 3), (40, 1), (20, 2), (30, 2))]
    table += [Connection(8080, "10.0.0.2", 60), Connection(9090, "10.0.0.1", 70)]
    assert over_cap(table, 8080, 3) == {"10.0.0.1": [30, 10]}  # seen last (inode numbers are not in order)
    assert over_cap(table, 8080, 5) == {}


def test_a_descriptor_is_known_by_its_local_port_and_peer_address():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0)) as client:
            accepted, _ = server.accept()
            with accepted:
                inode = os.fstat(accepted.fileno()).st_ino
                assert connection_of(accepted.fileno(), inode) == Connection(port, "127.0.0.2", inode)
                assert connection_of(accepted.fileno(), inode + 1) is None  # the number names another socket now
                assert connection_of(server.fileno(), os.fstat(server.fileno()).st_ino) is None  # listening
                mine = connection_of(client.fileno(), os.fstat(client.fileno()).st_ino)
                assert mine is not None and mine.local_port != port  # the client's end is another port


def test_a_v6_peer_counts_by_its_64_and_a_mapped_v4_as_itself():
    with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0)):
            accepted, _ = server.accept()
            with accepted:
                inode = os.fstat(accepted.fileno()).st_ino
                found = connection_of(accepted.fileno(), inode)
                assert found is not None and found.peer == "127.0.0.3"


def test_a_descriptor_that_is_no_longer_the_counted_socket_is_left_alone():
    left, right = socket.socketpair()
    try:
        inode = os.fstat(left.fileno()).st_ino
        assert socket_descriptors()[inode] == left.fileno()
        assert not shut_down(left.fileno(), inode + 1)  # the number now names another socket
        right.sendall(b"x")
        assert left.recv(1) == b"x"  # untouched
        assert shut_down(left.fileno(), inode)
        assert right.recv(1) == b""  # the other end sees the connection end
    finally:
        left.close()
        right.close()


def test_a_file_in_the_counted_sockets_place_is_left_alone(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert not shut_down(fd, os.fstat(fd).st_ino)  # same inode number by chance: not a socket
        assert os.read(fd, 4) == b"data"
    finally:
        os.close(fd)


def test_the_cap_closes_a_peers_newest_once_and_leaves_the_others():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients, accepted = [], []

        def connect(source: str) -> None:
            clients.append(socket.create_connection(("127.0.0.1", port), source_address=(source, 0)))
            accepted.append(server.accept()[0])

        try:
            for source in ["127.0.0.2"] * 3 + ["127.0.0.3"] * 3:
                connect(source)
            cap = PeerCap("test", port, 3)
            assert cap.enforce() == 0  # each within its cap
            connect("127.0.0.2")
            connect("127.0.0.2")
            assert cap.enforce() == 2  # 127.0.0.2's two newest go
            assert cap.enforce() == 0  # (not counted twice while the server has yet to close them)
            assert [c.recv(1, socket.MSG_DONTWAIT) for c in clients[6:]] == [b"", b""]
            for c in clients[:6]:
                with pytest.raises(BlockingIOError):  # still open, nothing to read
                    c.recv(1, socket.MSG_DONTWAIT)
            assert cap.closed == 2
        finally:
            for s in clients + accepted:
                s.close()


def test_a_socket_that_is_not_a_connection_has_its_duplicate_closed_once(monkeypatch):
    """Found by a review: for a listening socket (getpeername fails) the duplicate was closed
    by the socket object and then again by hand; a descriptor another thread had opened with
    that number in between (gRPC's core accepts all the time) was closed with it."""
    reopened: list[int] = []
    original = socket.socket.close

    def close_then_another_thread_opens(self: socket.socket) -> None:
        original(self)
        if not reopened:
            reopened.append(os.open(os.devnull, os.O_RDONLY))  # takes the number just freed

    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(socket.socket, "close", close_then_another_thread_opens)
        assert connection_of(server.fileno(), os.fstat(server.fileno()).st_ino) is None
        monkeypatch.undo()
    try:
        assert reopened, "the duplicate was never closed"
        os.fstat(reopened[0])  # still open: nobody closed that number a second time
    finally:
        for fd in reopened:
            os.close(fd)
