"""A fast read of keyring's Secret Service entries, without importing keyring or jeepney.

Why it exists: `import keyring`, with secretstorage and cryptography behind
it, costs over a hundred milliseconds, and even jeepney alone (typing, enum,
socket, selectors) costs more than the interpreter's own start: that is more
than the Go helpers spend on a whole `get` of a user's credential. So this
module speaks the few D-Bus calls a read needs itself, over `_socket` and
builtins only: connect to the session bus ($DBUS_SESSION_BUS_ADDRESS,
unix:path= or unix:abstract=), SASL EXTERNAL, Hello, Secret Service
OpenSession("plain"), SearchItems on the default collection with the
attributes keyring's SecretService backend writes and searches by (service
and username), GetSecrets, and Session.Close, in two round trips:
authentication, Hello, SearchItems and OpenSession go out in one write,
GetSecrets and Close in a second. A millisecond or two.

What it never does: write, delete, unlock or prompt. keyring stays the store
of record: every write and delete goes through it, and this module only reads
the items keyring wrote. Anything unusual (no bus address it understands,
authentication refused, an error reply, a locked item that GetSecrets leaves
out, no item or several, a malformed or oversized message, end of stream, a
reply that does not arrive whole within TIMEOUT, a password that is not
UTF-8) returns None, "don't know", and the caller asks keyring itself, which
then gives the proper answer or error.

Replies are matched to calls by their reply serial, never by their order
(gnome-keyring now and then answers out of order), and signals (the bus's
NameAcquired) and anything else not addressed to our calls are skipped.

The secret crosses the user's private session bus in a "plain" session, as
the Secret Service specification allows; the bus socket is the user's own.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from typing import Literal

    Order = Literal["little", "big"]

    Value = object  # what a D-Bus value unmarshals to: int, bool, str, bytes, list, dict or tuple

TIMEOUT = 0.5  # seconds per round trip (and for connecting); keyring, the fallback, has its own deadline

_BUS = "org.freedesktop.secrets"
_SERVICE_PATH = "/org/freedesktop/secrets"
_SERVICE = "org.freedesktop.Secret.Service"
_DEFAULT_COLLECTION = "/org/freedesktop/secrets/aliases/default"
_COLLECTION = "org.freedesktop.Secret.Collection"
_SESSION = "org.freedesktop.Secret.Session"
_DBUS = "org.freedesktop.DBus"
_DBUS_PATH = "/org/freedesktop/DBus"

_MAX_MESSAGE = 1 << 22  # bytes; a reply carrying one secret is a few KiB
_MAX_AUTH_LINE = 512
_MAX_DEPTH = 32  # containers in containers (variants included)

# Message types (D-Bus specification, "Message Format").
_METHOD_CALL, _METHOD_RETURN, _ERROR = 1, 2, 3
# Header field codes.
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL, _DESTINATION, _SIGNATURE, _UNIX_FDS = 1, 2, 3, 4, 5, 6, 8, 9

_ALIGNMENT = {"y": 1, "g": 1, "v": 1, "n": 2, "q": 2, "b": 4, "i": 4, "u": 4, "s": 4, "o": 4, "a": 4}
_ALIGNMENT.update({"x": 8, "t": 8, "(": 8, "{": 8})
_INTEGERS = {"y": (1, False), "n": (2, True), "q": (2, False), "i": (4, True), "u": (4, False)}
_INTEGERS.update({"x": (8, True), "t": (8, False)})
_BASIC = set(_INTEGERS) | {"b", "s", "o", "g"}
_ORDER: dict[int, Order] = {ord("l"): "little", ord("B"): "big"}


class Unexpected(Exception):
    """Anything this reader was not written for: the caller asks keyring."""


def read(service: str, username: str) -> str | None:
    """The password keyring stored for (service, username), or None to ask keyring."""
    if sys.platform == "win32":  # no Secret Service there (keyring.py chooses the fast read on Linux only)
        return None
    addresses = bus_addresses(os.environ.get("DBUS_SESSION_BUS_ADDRESS", ""))
    if not addresses:
        return None
    try:
        import _socket  # not `socket`: that one imports enum, selectors and more than this whole read costs

        for address in addresses:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(TIMEOUT)
                try:
                    sock.connect(address)
                except OSError:
                    continue  # the specification's rule: try the next address
                return _Bus(sock).read_password(service, username)
            finally:
                sock.close()
    except Exception:  # any trouble at all (no AF_UNIX here included): keyring decides
        return None
    return None


def bus_addresses(value: str) -> list[bytes]:
    """The socket addresses to try, in order, for a D-Bus server address string:
    unix:path= and unix:abstract= entries only (abstract ones with their leading NUL)."""
    found = []
    for entry in value.split(";"):
        transport, colon, rest = entry.partition(":")
        if transport != "unix" or not colon:
            continue
        options: dict[str, bytes] = {}
        try:
            for pair in rest.split(","):
                key, equals, escaped = pair.partition("=")
                if not equals or key in options:
                    raise Unexpected(entry)
                options[key] = _unescape(escaped)
        except (Unexpected, ValueError):
            continue
        places = [options[key] for key in ("path", "abstract") if key in options]
        if len(places) != 1 or not places[0] or b"\0" in places[0]:
            continue  # none (dir=, tmpdir=, runtime= are for servers), or both: not an address we can use
        found.append(places[0] if "path" in options else b"\0" + places[0])
    return found


def _unescape(text: str) -> bytes:
    """A D-Bus address value: bytes, any of them as %XX."""
    raw = text.encode("utf-8")
    if b"%" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # %
            digits = raw[i + 1 : i + 3]
            if len(digits) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                raise ValueError(text)
            out.append(int(digits, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


# -- the conversation ------------------------------------------------------------------------------


class _Bus:
    """One connection to the bus: our calls out, the replies to them in, everything else skipped."""

    __slots__ = ("buffer", "serial", "sock")

    def __init__(self, sock: socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.serial = 0

    def read_password(self, service: str, username: str) -> str | None:
        if sys.platform == "win32":  # unreachable (read() returns first); says so to mypy --platform win32
            return None
        auth = b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\nBEGIN\r\n"
        hello = self.call(_DBUS, _DBUS_PATH, _DBUS, "Hello")
        searched = self.call(
            _BUS, _DEFAULT_COLLECTION, _COLLECTION, "SearchItems", "a{ss}", _attributes_body(service, username)
        )
        opened = self.call(_BUS, _SERVICE_PATH, _SERVICE, "OpenSession", "sv", _open_session_body())
        # First round trip: the bus takes messages right after BEGIN and handles Hello before the rest.
        # SearchItems goes before OpenSession: gnome-keyring 42, handed a call while it is still
        # setting up a session it has just opened, now and then (once in 500 reads here) answers it
        # with an error naming a garbled object path. In this order, about one read in 10,000 still
        # gets an error ("Method SearchItems is not implemented"): None, and keyring answers.
        deadline = self.send(auth + hello[1] + searched[1] + opened[1])
        self.authenticated(deadline)
        first = self.replies({hello[0]: "s", searched[0]: "ao", opened[0]: "vo"}, deadline, {})
        _succeeded(first[hello[0]])
        (items,), (_, session) = _succeeded(first[searched[0]]), _succeeded(first[opened[0]])
        session = _object_path(session)
        # Second round trip: GetSecrets, and Session.Close with it. We hang up only once the Close is
        # answered (or its time is up): gnome-keyring 42, handed a Close and the client's disconnection
        # together, has crashed within a few hundred reads here.
        close = self.call(_BUS, session, _SESSION, "Close")
        if not isinstance(items, list) or len(items) != 1:
            self.close(close)
            return None  # no item, or several (keyring would pick one): keyring answers
        item = _object_path(items[0])
        get = self.call(_BUS, _SERVICE_PATH, _SERVICE, "GetSecrets", "aoo", _get_secrets_body(item, session))
        second: dict[int, tuple[Value, ...] | None] = {}
        try:
            self.replies({get[0]: "a{o(oayays)}", close[0]: ""}, self.send(get[1] + close[1]), second)
        except Exception:  # a timeout, end of stream, a broken message: about the secret, or only the Close?
            if get[0] not in second:
                raise  # the secret did not come
            # It came, whole and answering our call: whatever happened to the Close loses nothing.
        (secrets,) = _succeeded(second[get[0]])
        # GetSecrets leaves out locked items: a locked collection reads as "ask keyring".
        found = secrets.get(item) if isinstance(secrets, dict) else None
        if not isinstance(found, tuple) or not isinstance(found[2], bytes):
            return None
        return found[2].decode("utf-8")  # not UTF-8: keyring decides what that is

    def close(self, close: tuple[int, bytes]) -> None:
        """Send the Session.Close call `close` and wait for its answer, whatever it is."""
        try:
            self.replies({close[0]: ""}, self.send(close[1]), {})
        except Exception:
            return

    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        """(serial, message): a method call, marshalled little-endian."""
        self.serial += 1
        return self.serial, _method_call(self.serial, destination, path, interface, member, signature, body)

    def send(self, data: bytes) -> float:
        """Send all of `data` within TIMEOUT; returns the deadline for its replies."""
        deadline = time.monotonic() + TIMEOUT
        self.sock.settimeout(TIMEOUT)
        self.sock.sendall(data)
        return deadline

    def fill(self, size: int, deadline: float) -> None:
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unexpected("no complete answer in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Unexpected("end of stream")
            self.buffer += chunk

    def authenticated(self, deadline: float) -> None:
        """The server's answer to AUTH must be OK (its BEGIN has no answer); message data may follow."""
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_AUTH_LINE:
                raise Unexpected("no authentication answer")
            self.fill(len(self.buffer) + 1, deadline)
        line, _, rest = bytes(self.buffer).partition(b"\r\n")
        if not line.startswith(b"OK "):
            raise Unexpected("authentication refused")
        self.buffer = bytearray(rest)

    def replies(
        self, wanted: dict[int, str], deadline: float, found: dict[int, tuple[Value, ...] | None]
    ) -> dict[int, tuple[Value, ...] | None]:
        """Collects into `found` the answers to the calls `wanted` (serial -> reply signature), in
        whatever order they come: a reply's body, or None for an error. Returns `found` once all are in;
        what came before a timeout or a broken message stays in `found`."""
        while len(found) < len(wanted):
            kind, fields, reader = self.message(deadline)
            serial = fields.get(_REPLY_SERIAL)
            if kind not in (_METHOD_RETURN, _ERROR) or not isinstance(serial, int) or serial not in wanted:
                continue  # signals, calls to us, replies to nothing we asked
            if serial in found:
                raise Unexpected("two answers to one call")
            if kind == _ERROR:
                found[serial] = None
                continue
            signature = fields.get(_SIGNATURE, "")
            if signature != wanted[serial] or fields.get(_UNIX_FDS, 0) != 0:
                raise Unexpected(f"reply signature {signature!r}")
            found[serial] = reader.values(wanted[serial])
        return found

    def message(self, deadline: float) -> tuple[int, dict[int, Value], _Reader]:
        """The next whole message: (type, header fields, a reader positioned at its body)."""
        self.fill(16, deadline)
        order = _ORDER.get(self.buffer[0])
        if order is None or self.buffer[3] != 1:
            raise Unexpected("not a D-Bus message")
        body_length = int.from_bytes(self.buffer[4:8], order)
        fields_end = 16 + int.from_bytes(self.buffer[12:16], order)
        body_start = fields_end + (-fields_end % 8)
        total = body_start + body_length
        if total > _MAX_MESSAGE:
            raise Unexpected("message too large")
        self.fill(total, deadline)
        data = bytes(self.buffer[:total])
        del self.buffer[:total]
        kind = data[1]
        header = _Reader(data, order, 16, fields_end)  # the fields, a(yv), after their length
        fields: dict[int, Value] = {}
        while header.pos < fields_end:
            header.align(8)
            code = header.take(1)[0]
            fields[code] = header.parse("v", 0, 0)[0]
        return kind, fields, _Reader(data, order, body_start, total)


def _succeeded(body: tuple[Value, ...] | None) -> tuple[Value, ...]:
    if body is None:
        raise Unexpected("error reply")
    return body


def _object_path(value: Value) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise Unexpected("not an object path")
    return value


# -- marshalling (little-endian, what our calls send) ----------------------------------------------


class _Writer:
    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def align(self, size: int) -> None:
        self.data += bytes(-len(self.data) % size)

    def uint32(self, value: int) -> None:
        self.align(4)
        self.data += value.to_bytes(4, "little")

    def string(self, text: str) -> None:
        """s or o."""
        encoded = text.encode("utf-8")
        if b"\0" in encoded:
            raise Unexpected("NUL in a string")
        self.uint32(len(encoded))
        self.data += encoded + b"\0"

    def signature(self, text: str) -> None:
        """g."""
        encoded = text.encode("ascii")
        self.data.append(len(encoded))
        self.data += encoded + b"\0"

    def array(self, alignment: int) -> tuple[int, int]:
        """Start an array: (where its length goes, where its elements start), for end_array."""
        self.uint32(0)
        length_at = len(self.data) - 4
        self.align(alignment)  # the padding before the first element is not part of the length
        return length_at, len(self.data)

    def end_array(self, started: tuple[int, int]) -> None:
        length_at, start = started
        self.data[length_at : length_at + 4] = (len(self.data) - start).to_bytes(4, "little")


def _method_call(
    serial: int,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str,
    body: bytes,
) -> bytes:
    out = _Writer()
    out.data += bytes((ord("l"), _METHOD_CALL, 0, 1))  # little-endian, no flags, version 1
    out.uint32(len(body))
    out.uint32(serial)
    fields = [
        (_PATH, "o", path),
        (_INTERFACE, "s", interface),
        (_MEMBER, "s", member),
        (_DESTINATION, "s", destination),
    ]
    if signature:
        fields.append((_SIGNATURE, "g", signature))
    start = out.array(8)
    for code, kind, value in fields:
        out.align(8)
        out.data.append(code)
        out.signature(kind)
        if kind == "g":
            out.signature(value)
        else:
            out.string(value)
    out.end_array(start)
    out.align(8)
    return bytes(out.data) + body


def _open_session_body() -> bytes:
    """OpenSession(algorithm "plain", input: a variant holding the empty string)."""
    out = _Writer()
    out.string("plain")
    out.signature("s")
    out.string("")
    return bytes(out.data)


def _attributes_body(service: str, username: str) -> bytes:
    """a{ss}: the attributes keyring's SecretService backend searches by (its default scheme)."""
    out = _Writer()
    start = out.array(8)
    for key, value in (("service", service), ("username", username)):
        out.align(8)
        out.string(key)
        out.string(value)
    out.end_array(start)
    return bytes(out.data)


def _get_secrets_body(item: str, session: str) -> bytes:
    """aoo: GetSecrets([item], session)."""
    out = _Writer()
    start = out.array(4)
    out.string(item)
    out.end_array(start)
    out.string(session)
    return bytes(out.data)


# -- unmarshalling (either byte order, every basic type but doubles and fds) -----------------------


class _Reader:
    """Reads values from data[pos:end]; positions count from the message's start, as alignment does."""

    __slots__ = ("data", "end", "order", "pos")

    def __init__(self, data: bytes, order: Order, pos: int, end: int) -> None:
        self.data = data
        self.order = order
        self.pos = pos
        self.end = end

    def take(self, size: int) -> bytes:
        if self.pos + size > self.end:
            raise Unexpected("value runs past its message")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def align(self, size: int) -> None:
        if any(self.take(-self.pos % size)):
            raise Unexpected("non-zero padding")

    def uint(self, size: int, signed: bool = False) -> int:
        self.align(size)
        return int.from_bytes(self.take(size), self.order, signed=signed)

    def values(self, signature: str) -> tuple[Value, ...]:
        """A whole body of this signature, which must fill the body exactly."""
        found = []
        i = 0
        while i < len(signature):
            value, i = self.parse(signature, i, 0)
            found.append(value)
        if self.pos != self.end:
            raise Unexpected("body longer than its signature")
        return tuple(found)

    def value(self, signature: str) -> Value:
        value, i = self.parse(signature, 0, 0)
        if i != len(signature):
            raise Unexpected("more than one type")
        return value

    def text(self, length: int) -> str:
        raw = self.take(length + 1)
        if raw[-1] != 0:
            raise Unexpected("string without its NUL")
        return raw[:-1].decode("utf-8")

    def parse(self, signature: str, i: int, depth: int) -> tuple[Value, int]:
        """The value of the complete type at signature[i], and the index after that type."""
        if depth > _MAX_DEPTH or i >= len(signature):
            raise Unexpected("bad signature")
        code = signature[i]
        if code in _INTEGERS:
            size, signed = _INTEGERS[code]
            return self.uint(size, signed), i + 1
        if code == "b":
            flag = self.uint(4)
            if flag > 1:
                raise Unexpected("boolean out of range")
            return flag == 1, i + 1
        if code in "so":
            return self.text(self.uint(4)), i + 1
        if code == "g":
            return self.text(self.take(1)[0]), i + 1
        if code == "v":
            inner = self.text(self.take(1)[0])
            value, j = self.parse(inner, 0, depth + 1)
            if j != len(inner):
                raise Unexpected("variant of more than one type")
            return value, i + 1
        if code == "a":
            return self.array(signature, i + 1, depth + 1)
        if code == "(":
            self.align(8)
            items = []
            j = i + 1
            while j < len(signature) and signature[j] != ")":
                value, j = self.parse(signature, j, depth + 1)
                items.append(value)
            if j >= len(signature) or j == i + 1:
                raise Unexpected("bad struct signature")
            return tuple(items), j + 1
        raise Unexpected(f"type {code!r} not handled")

    def array(self, signature: str, i: int, depth: int) -> tuple[Value, int]:
        """The array whose element type starts at signature[i], and the index after its type."""
        after = _skip(signature, i - 1)
        length = self.uint(4)
        element = signature[i]
        if element == "y":
            return self.take(length), after
        self.align(_ALIGNMENT[element])
        stop = self.pos + length
        if stop > self.end:
            raise Unexpected("array runs past its message")
        if element == "{":
            key_type, value_end = signature[i + 1], _skip(signature, i + 2)
            if key_type not in _BASIC or signature[value_end] != "}" or value_end + 1 != after:
                raise Unexpected("bad dict signature")
            entries: dict[Value, Value] = {}
            while self.pos < stop:
                self.align(8)
                key, _ = self.parse(signature, i + 1, depth)
                entries[key], _ = self.parse(signature, i + 2, depth)
            found: Value = entries
        else:
            items = []
            while self.pos < stop:
                items.append(self.parse(signature, i, depth)[0])
            found = items
        if self.pos != stop:
            raise Unexpected("array length wrong")
        return found, after


def _skip(signature: str, i: int) -> int:
    """The index after the complete type that starts at signature[i]."""
    while i < len(signature) and signature[i] == "a":
        i += 1
    if i >= len(signature):
        raise Unexpected("bad signature")
    if signature[i] not in "({":
        return i + 1
    depth = 0
    for j in range(i, len(signature)):
        if signature[j] in "({":
            depth += 1
        elif signature[j] in ")}":
            depth -= 1
            if depth == 0:
                return j + 1
    raise Unexpected("unbalanced signature")
