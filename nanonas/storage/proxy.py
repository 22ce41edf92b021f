"""A TCP proxy in this process, put between nanonas and a database server to make faults.

Tests and `benchmarks/faults.py` use it to break connections to the shared PostgreSQL, MariaDB
and Redis servers without restarting them:

    with Proxy.for_url("postgresql://postgres@127.0.0.1:5432/test") as proxy:
        engine = sqlalchemy.create_engine(proxy.url(url))  # ...@127.0.0.1:<proxy.port>/test
        proxy.drop()        # every open connection is reset; new ones are still accepted
        proxy.freeze()      # connections stay open but carry nothing (bytes are held)
        proxy.refuse()      # drop all and stop listening: connect() is refused
        proxy.resume()      # back to normal, held bytes delivered, same port
        proxy.cut_reply(after=b"INSERT INTO trials ", then=b"COMMIT")
            # the first connection to send an INSERT INTO trials, then a COMMIT, is reset just
            # as the server answers that COMMIT: it was applied, the client never hears so

Each connection is forwarded by two daemon threads, one per direction.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
import urllib.parse

from nanonas.storage.urls import mask

__all__ = ["Proxy"]

_TICK = 0.05  # how often blocked threads look at their flags: close() must be prompt
_CHUNK = 65536
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


class _Connection:
    """One client socket and its upstream socket, pumped both ways."""

    def __init__(self, proxy: Proxy, client: socket.socket, client_port: int) -> None:
        self.proxy = proxy
        self.client = client
        self.client_port = client_port
        self.upstream: socket.socket | None = None
        # Held around every (non-blocking) recv/send and close, so a socket is never closed
        # under a thread using it and its descriptor reused meanwhile.
        self.lock = threading.Lock()
        self.dead = False
        self.done = 0  # directions that ended with an orderly EOF
        self.primed = False  # sent the cut's `after` bytes, waits for its `then`
        self.cut_next = False  # the next bytes from the server end this connection instead

    def run(self) -> None:
        try:
            upstream = socket.create_connection(self.proxy.target, timeout=5)
        except OSError:
            self.close(reset=True)  # the client sees the server as unreachable
            return
        upstream.setblocking(False)
        with self.lock:
            if self.dead:  # dropped while connecting
                upstream.close()
                return
            self.upstream = upstream
        self.proxy._spawn(self.pump, upstream, self.client, True)
        self.pump(self.client, upstream, False)

    def pump(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        flowing = self.proxy._flowing
        try:
            while not self.dead:
                # Frozen: do not read, so the kernel buffers fill up and nothing is lost.
                if not flowing.wait(_TICK) or not select.select([src], [], [], _TICK)[0]:
                    continue
                with self.lock:
                    if self.dead:
                        return
                    try:
                        data = src.recv(_CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:  # orderly EOF: pass the half-close on
                        dst.shutdown(socket.SHUT_WR)
                if not data:
                    self._eof()
                    return
                if to_client and self.cut_next:
                    self.close(reset=True)
                    return
                if not to_client:
                    self.proxy._watch_request(self, data)
                self._send(dst, data)
        except (OSError, ValueError):  # a reset peer, or our own close under select
            self.close(reset=True)

    def _send(self, dst: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.dead:
            # A freeze after the read holds these bytes here until resume().
            if not self.proxy._flowing.wait(_TICK) or not select.select([], [dst], [], _TICK)[1]:
                continue
            with self.lock:
                if self.dead:
                    return
                with contextlib.suppress(BlockingIOError):
                    view = view[dst.send(view) :]

    def _eof(self) -> None:
        with self.lock:
            self.done += 1
            finished = self.done == 2
        if finished:
            self.close(reset=False)

    def close(self, *, reset: bool) -> bool:
        """Close both sides (with RST if `reset`); False if it was closed already."""
        with self.lock:
            if self.dead:
                return False
            self.dead = True
            for sock in (self.client, self.upstream):
                if sock is None:
                    continue
                if reset:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                sock.close()
        self.proxy._forget(self)
        return True


class Proxy:
    """A TCP proxy on 127.0.0.1 (a free port) in front of target host:port, run by daemon
    threads of this process."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._cut: tuple[bytes, bytes | None] | None = None  # cut_reply's (after, then)
        self._closed = False
        self._listener: socket.socket | None = None
        self._stop_accept = threading.Event()
        self._acceptor: threading.Thread | None = None
        self.port = 0
        self._listen()

    @classmethod
    def for_url(cls, url: str) -> Proxy:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(
                f"URL {mask(url)!r} names no host:port for a proxy to stand in front of"
            )
        return cls(parts.hostname, port)

    def url(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        user, at, _ = parts.netloc.rpartition("@")
        return parts._replace(netloc=f"{user}{at}127.0.0.1:{self.port}").geturl()

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def armed(self) -> bool:
        """Whether a cut_reply has yet to happen."""
        with self._lock:
            return self._cut is not None

    def drop(self) -> int:
        with self._lock:
            connections = list(self._connections)
        return sum(c.close(reset=True) for c in connections)

    def freeze(self) -> None:
        self._flowing.clear()

    def refuse(self) -> None:
        self._stop_listening()
        self.drop()

    def resume(self) -> None:
        if self._listener is None and not self._closed:
            self._listen()
        self._flowing.set()

    def cut_reply(self, *, after: bytes, then: bytes | None = None) -> None:
        """Arm a cut: the first connection whose client sends `after` (and, if given, `then`
        later) is reset as the server's answer to that request arrives; then disarm."""
        with self._lock:
            self._cut = (after, then)

    def close(self) -> None:
        self._closed = True
        self._stop_listening()
        self.drop()
        self._flowing.set()  # wake frozen pumps so they see their connection is dead
        deadline = time.monotonic() + 2
        # Join until none is left: a connection's first thread may spawn its second pump
        # after a first look at the list (that pump sees its connection dead and ends at once).
        while time.monotonic() < deadline:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The same port again after refuse(): connections from before may linger in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(_TICK)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accept = threading.Event()
        self._acceptor = self._spawn(self._accept, listener, self._stop_accept)

    def _stop_listening(self) -> None:
        if self._listener is None:
            return
        # The acceptor stops first, then the socket closes: it is never closed under accept().
        self._stop_accept.set()
        if self._acceptor is not None and self._acceptor is not threading.current_thread():
            self._acceptor.join(2)
        self._listener.close()
        self._listener = None

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(False)
            connection = _Connection(self, client, address[1])
            with self._lock:
                self._accepted += 1
                self._connections.add(connection)
            self._spawn(connection.run)

    def _spawn(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name="nanonas-proxy")
        # Started under the lock: a thread listed but not yet started is not alive, and another
        # spawn's pruning would drop it from the list close() joins.
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()
        return thread

    def _watch_request(self, connection: _Connection, data: bytes) -> None:
        """Whether this request from the client arms `connection`'s cut (cut_reply)."""
        with self._lock:
            if self._cut is None:
                return
            after, then = self._cut
            if connection.primed and then is not None and then in data:
                connection.cut_next, self._cut = True, None
            elif not connection.primed and after in data:
                if then is None:
                    connection.cut_next, self._cut = True, None
                else:
                    connection.primed = True

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
