"""A fast read of keyring's Secret Service entries, without importing keyring.

`import keyring`, with secretstorage and cryptography behind it, costs over a
hundred milliseconds: ten times the Go helpers, on every `get` of a user's
credential. keyring stays the store of record: every write and delete goes
through it, and this module only reads the items keyring wrote (attributes
service and username, in the default collection keyring uses) over jeepney,
keyring's own D-Bus library. Anything unusual (a locked collection, no item
or several, a D-Bus error, no answer within TIMEOUT) returns None and the
caller asks keyring itself, which then gives the proper answer or error. It
never unlocks anything, so it never prompts.

The secret crosses the user's private session bus in a "plain" session, as
the Secret Service specification allows; the bus socket is the user's own.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TIMEOUT = 0.5  # seconds per D-Bus call; the fallback through keyring still has its own deadline

_BUS = "org.freedesktop.secrets"
_DEFAULT_COLLECTION = "/org/freedesktop/secrets/aliases/default"


def read(service: str, username: str) -> str | None:
    """The password keyring stored for (service, username), or None to ask keyring."""
    try:
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.io.blocking import open_dbus_connection
    except ImportError:
        return None

    def call(
        conn: Any, path: str, interface: str, method: str, signature: str | None = None, body: tuple[Any, ...] = ()
    ) -> Any:
        address = DBusAddress(path, bus_name=_BUS, interface=interface)
        reply = conn.send_and_get_reply(new_method_call(address, method, signature, body), timeout=TIMEOUT)
        if reply.header.message_type == MessageType.error:
            raise LookupError(method)
        return reply.body

    try:
        with open_dbus_connection(bus="SESSION", auth_timeout=TIMEOUT) as conn:
            service_path, service_iface = "/org/freedesktop/secrets", "org.freedesktop.Secret.Service"
            _, session = call(conn, service_path, service_iface, "OpenSession", "sv", ("plain", ("s", "")))
            try:
                (items,) = call(
                    conn,
                    _DEFAULT_COLLECTION,
                    "org.freedesktop.Secret.Collection",
                    "SearchItems",
                    "a{ss}",
                    ({"service": service, "username": username},),
                )
                if len(items) != 1:
                    return None
                # GetSecrets leaves out locked items: a locked collection reads as "ask keyring".
                (secrets,) = call(conn, service_path, service_iface, "GetSecrets", "aoo", (items, session))
                found = secrets.get(items[0])
                return bytes(found[2]).decode("utf-8") if found else None
            finally:
                call(conn, session, "org.freedesktop.Secret.Session", "Close")
    except Exception:  # any trouble at all: keyring decides
        return None
