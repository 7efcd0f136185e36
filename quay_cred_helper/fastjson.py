"""JSON for the hot paths, without `import json`.

json's decoder and encoder modules import `re` (about 5 ms, as much as the
interpreter's own start), and `get`, `list` and `version` run thousands of
times a day. The C scanner and string encoder that json itself uses live in
`_json`, which imports nothing; we drive them directly and fall back to json
where `_json` is missing (other Python implementations). Writes, which are
rare, use json itself.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

_make_scanner: Any
try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has _json
    _make_scanner = None


class _Options:
    # The attributes json.decoder.JSONDecoder hands the C scanner, with json.loads' defaults.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity, as json.loads accepts them


_WHITESPACE = " \t\n\r"


def _json_loads(text: str) -> Any:
    # json itself, for other Pythons and for the error path: the C scanner
    # reports some errors through json.decoder, which we have not imported.
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at position {exc.pos}") from None
    except ValueError:  # an integer longer than the interpreter converts (4300 digits)
        raise ValueError("number too large") from None


def loads(text: str) -> Any:
    """Like json.loads for a str; raises ValueError with a one-line message on malformed JSON."""
    if _make_scanner is None:
        return _json_loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _make_scanner(_Options())(text, start)
    except Exception:  # StopIteration, or SystemError for errors the scanner reports through json
        return _json_loads(text)
    if text[end:].strip(_WHITESPACE):
        return _json_loads(text)
    return value


def quote(text: str) -> str:
    """A str as a JSON string literal, as json.dumps writes it (ASCII)."""
    if _make_scanner is None:
        import json

        return json.dumps(text)
    result: str = _quote(text)
    return result


def dumps_strings(mapping: Mapping[str, str]) -> str:
    """A {str: str} dict as json.dumps writes it (ASCII, ", " and ": " separators)."""
    if _make_scanner is None:
        import json

        return json.dumps(mapping)
    return "{" + ", ".join(f"{_quote(k)}: {_quote(v)}" for k, v in mapping.items()) + "}"
