"""A stand-in for a session bus with a Secret Service behind it, badly behaved on request.

A unix-socket server (a temp path, or an abstract name) speaking just enough
D-Bus for the fast Secret Service read: SASL EXTERNAL, Hello, OpenSession,
Collection.SearchItems, GetSecrets and Session.Close. Messages are parsed and
built with jeepney, an independent implementation of the wire format, so the
reader is never checked against its own marshalling.

`behaviour` makes it misbehave the ways a real bus or daemon can, or worse:

  normal         answers each call in order
  reversed       answers every batch of calls in reverse order
  fragments      sends every byte on its own, with a pause between
  signals        sends signals, a call to the client and replies to serials it never used before each reply
  big-endian     answers in big-endian byte order
  error:MEMBER   answers the call to MEMBER with an error
  locked         GetSecrets leaves the items out (what a locked collection does)
  garbage:HEX    sends these bytes instead of its first answer after authenticating, then closes
  truncate:N     sends the first N bytes of its first answers, then closes (EOF mid-message)
  incomplete:N   sends the first N bytes of its first answers, then says nothing more
  trickle        sends its answers a byte every 50 ms, for ever
  hang           authenticates, then never answers
  hang-close     never answers Session.Close
  hang-auth      never answers the authentication
  reject         refuses the authentication

Every loop is bounded by a short socket timeout and the stop event; stop()
closes the socket and joins the thread.
"""

import os
import socket
import threading
import time

from jeepney import new_error, new_method_return, new_signal
from jeepney.low_level import Endianness, HeaderFields, MessageFlag, MessageType, Parser
from jeepney.wrappers import DBusAddress

GUID = "0123456789abcdef0123456789abcdef"
SESSION = "/org/freedesktop/secrets/session/s7"
COLLECTION = "/org/freedesktop/secrets/collection/login"
UNIQUE_NAME = ":1.42"


class FakeBus:
    def __init__(self, directory, items=None, behaviour="normal", abstract=False, mutate=None):
        """items: {(service, username): [secret bytes, ...]}: one item per secret. mutate: (n, function):
        the n-th answer (0: to Hello, SearchItems and OpenSession; 1: to GetSecrets) goes out as
        function(its bytes), and then the connection closes."""
        self.items = items or {}
        self.behaviour = behaviour
        self.mutate = mutate
        self.calls = []  # (member, path, body) of every method call received, in order
        self.batches = []  # the members of each batch of calls answered together: one per round trip
        self.auth_lines = []
        self.connections = 0
        self.finished = 0
        self.errors = []  # exceptions in the server thread: a test checks there are none
        self.stop_event = threading.Event()
        self.serial = 1000
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if abstract:
            name = f"quay-cred-helper-test-{os.getpid()}-{id(self)}"
            self.listener.bind("\0" + name)
            self.address = f"unix:abstract={name},guid={GUID}"
        else:
            path = os.path.join(str(directory), "bus")
            self.listener.bind(path)
            self.address = f"unix:path={path},guid={GUID}"
        self.listener.listen(4)
        self.listener.settimeout(0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.listener.close()
        assert not self.thread.is_alive()

    def settle(self, timeout=5.0):
        """Wait until every connection accepted so far is over (the client has hung up)."""
        deadline = time.monotonic() + timeout
        while self.finished < self.connections and time.monotonic() < deadline:
            time.sleep(0.005)
        return self

    def members(self):
        return [member for member, _, _ in self.calls]

    # -- the server side ----------------------------------------------------------------------------

    def _run(self):
        while not self.stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.connections += 1
            try:
                conn.settimeout(0.05)
                self._serve(conn)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: that is its right
            except Exception as exc:
                self.errors.append(exc)
            finally:
                conn.close()
                self.finished += 1

    def _recv(self, conn):
        """Bytes from the client; b"" once it has gone (or we are stopping); None for nothing yet."""
        if self.stop_event.is_set():
            return b""
        try:
            return conn.recv(65536)
        except (TimeoutError, socket.timeout):
            return None

    def _serve(self, conn):
        data = b""
        while b"BEGIN\r\n" not in data:
            chunk = self._recv(conn)
            if chunk == b"":
                return
            data += chunk or b""
            if len(data) > 4096:
                raise AssertionError(f"no BEGIN: {data[:100]!r}")
            if b"\r\n" in data and not self.auth_lines:
                line = data.split(b"\r\n", 1)[0]
                self.auth_lines.append(line)
                if self.behaviour == "hang-auth":
                    return self._hang(conn)
                if self.behaviour == "reject":
                    conn.sendall(b"REJECTED EXTERNAL\r\n")
                    return self._hang(conn)
                expected = b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode()
                if line != expected:
                    conn.sendall(b"REJECTED EXTERNAL\r\n")
                    raise AssertionError(f"unexpected AUTH line {line!r}")
                conn.sendall(f"OK {GUID}\r\n".encode())
        parser = Parser()
        pending = parser.feed(data.split(b"BEGIN\r\n", 1)[1])
        answered = 0
        while True:
            if self.behaviour == "reversed" or not pending:
                # Gather the whole batch the client sent in one go (it pipelines).
                chunk = self._recv(conn)
                if chunk == b"":
                    return
                if chunk:
                    pending += parser.feed(chunk)
                    continue
                if not pending:
                    continue
            batch, pending = pending, []
            self.batches.append([call.header.fields.get(HeaderFields.member) for call in batch])
            replies = [reply for call in batch for reply in self._answer(call)]
            if self.behaviour == "reversed":
                replies.reverse()
            if not replies:
                continue
            if self.behaviour == "hang":
                return self._hang(conn)
            wire = b"".join(self._wire(reply) for reply in replies)
            if self.mutate and self.mutate[0] == answered:
                conn.sendall(self.mutate[1](wire))
                return
            if answered == 0 and self._broken(conn, wire):
                return
            answered += 1
            self._send(conn, wire)

    def _broken(self, conn, wire):
        """Misbehaviours on the first answer after authenticating; True when the conversation is over."""
        kind, _, arg = self.behaviour.partition(":")
        if kind == "garbage":
            conn.sendall(bytes.fromhex(arg))
            return True
        if kind == "truncate":
            conn.sendall(wire[: int(arg)])
            return True
        if kind == "incomplete":
            conn.sendall(wire[: int(arg)])
            self._hang(conn)
            return True
        if kind == "trickle":
            for byte in wire:
                conn.sendall(bytes([byte]))
                if self.stop_event.wait(0.05) or self._recv_gone(conn):
                    return True
            return True
        return False

    def _recv_gone(self, conn):
        conn.settimeout(0.001)
        try:
            return self._recv(conn) == b""
        finally:
            conn.settimeout(0.05)

    def _hang(self, conn):
        while self._recv(conn) != b"":
            pass

    def _send(self, conn, wire):
        if self.behaviour == "fragments":
            for byte in wire:
                conn.sendall(bytes([byte]))
                time.sleep(0.0002)
        else:
            conn.sendall(wire)

    def _wire(self, message):
        if self.behaviour == "big-endian":
            message.header.endianness = Endianness.big
        self.serial += 1
        return message.serialise(serial=self.serial)

    def _answer(self, call):
        """The messages answering one message from the client."""
        header = call.header
        if header.message_type != MessageType.method_call:
            raise AssertionError(f"the client sent a {header.message_type}")
        fields = header.fields
        member, path = fields.get(HeaderFields.member), fields.get(HeaderFields.path)
        self.calls.append((member, path, call.body))
        out = []
        if self.behaviour == "signals":
            out += self._noise(call)
        if self.behaviour == f"error:{member}":
            return out + [new_error(call, "org.freedesktop.DBus.Error.Failed", "s", ("as asked",))]
        if member == "Hello":
            out.append(new_method_return(call, "s", (UNIQUE_NAME,)))
            bus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
            out.append(new_signal(bus, "NameAcquired", "s", (UNIQUE_NAME,)))  # as dbus-daemon does
        elif member == "OpenSession":
            if call.body != ("plain", ("s", "")):
                raise AssertionError(f"OpenSession{call.body!r}")
            out.append(new_method_return(call, "vo", (("s", ""), SESSION)))
        elif member == "SearchItems":
            (attributes,) = call.body
            secrets = self.items.get((attributes.get("service"), attributes.get("username")), [])
            if set(attributes) != {"service", "username"}:
                secrets = []
            paths = [f"{COLLECTION}/{self._item_number(attributes, i)}" for i in range(len(secrets))]
            out.append(new_method_return(call, "ao", (paths,)))
        elif member == "GetSecrets":
            paths, session = call.body
            if session != SESSION:
                raise AssertionError(f"GetSecrets for session {session}")
            found = {} if self.behaviour == "locked" else self._secrets(paths)
            out.append(new_method_return(call, "a{o(oayays)}", (found,)))
        elif member == "Close":
            if path != SESSION:
                raise AssertionError(f"Close of {path}")
            if not header.flags & MessageFlag.no_reply_expected and self.behaviour != "hang-close":
                out.append(new_method_return(call))
        else:
            out.append(new_error(call, "org.freedesktop.DBus.Error.UnknownMethod", "s", (member,)))
        return out

    def _item_number(self, attributes, i):
        keys = sorted(self.items)
        return keys.index((attributes["service"], attributes["username"])) * 100 + i

    def _secrets(self, paths):
        keys = sorted(self.items)
        found = {}
        for path in paths:
            number = int(path.rsplit("/", 1)[1])
            secret = self.items[keys[number // 100]][number % 100]
            found[path] = (SESSION, b"", secret, "text/plain")
        return found

    def _noise(self, call):
        """What else a bus may put before a reply: signals, a call to us, replies and errors to other serials."""
        emitter = DBusAddress(COLLECTION, "org.freedesktop.secrets", "org.freedesktop.DBus.Properties")
        changed = new_signal(emitter, "PropertiesChanged", "sa{sv}as", ("org.freedesktop.Secret.Collection", {}, []))
        ping = new_signal(emitter, "NameAcquired", "s", (UNIQUE_NAME,))
        ping.header.message_type = MessageType.method_call  # a call to the client, which it must not take as a reply
        stray = new_method_return(call, "s", ("not yours",))
        stray.header.fields[HeaderFields.reply_serial] = call.header.serial + 500
        stray_error = new_error(call, "org.freedesktop.DBus.Error.Failed", "s", ("not yours",))
        stray_error.header.fields[HeaderFields.reply_serial] = call.header.serial + 501
        bus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
        owner = new_signal(bus, "NameOwnerChanged", "sss", ("org.example", "", ":1.7"))
        return [changed, ping, stray, stray_error, owner]
