"""Servers on 127.0.0.1 that misbehave on cue: they drip bytes, hang up on TLS, or log what a proxy sees.

Each is a context manager that binds an ephemeral loopback port, serves from
daemon threads, and stops (closing every connection) on exit.
"""

import contextlib
import socket
import threading
import time


class _Server:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.connections = []
        self.lock = threading.Lock()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.sock.close()
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        raise NotImplementedError


def _read_head(conn, limit=65536):
    """The request line and headers (bytes), or b'' if the peer went away."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        try:
            chunk = conn.recv(4096)
        except OSError:
            return b""
        if not chunk:
            return data
        data += chunk
    return data


class DripServer(_Server):
    """Answers every request with `prefix` at once, then `response` one byte every `interval` seconds
    (for at most `seconds` in all)."""

    def __init__(self, response, prefix=b"", interval=0.5, seconds=60):
        super().__init__()
        self.response, self.prefix, self.interval, self.seconds = response, prefix, interval, seconds

    def _serve(self, conn):
        if not _read_head(conn):
            return
        if self.prefix:
            conn.sendall(self.prefix)
        end = time.monotonic() + self.seconds
        for byte in self.response:
            if self.stopped.wait(self.interval) or time.monotonic() > end:
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return


class TLSHangup(_Server):
    """A plain-http front for `target` (host:port) that hangs up on a TLS ClientHello, as some servers do."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.hangups = 0

    def _serve(self, conn):
        first = conn.recv(1, socket.MSG_PEEK)
        if first == b"\x16":  # a TLS handshake record
            self.hangups += 1
            conn.close()
            return
        host, port = self.target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        with self.lock:
            self.connections.append(upstream)
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)


def _pipe(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class LoggingProxy(_Server):
    """An HTTP proxy that forwards nothing: it records each request's head and answers 502.

    What a real proxy would have seen (plain-http requests with their Authorization
    headers, or CONNECT lines) ends up in `.seen`."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _serve(self, conn):
        head = _read_head(conn)
        if head:
            self.seen.append(head.decode("latin-1"))
            body = b"proxy: not forwarded"
            conn.sendall(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
        conn.close()
