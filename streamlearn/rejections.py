"""Why a message was rejected, in words that are safe to build from anything a message holds.

Parsed values are described, never ``repr``-ed: a 2 KB message can nest lists a thousand deep,
and ``repr`` of that raises ``RecursionError``. Every detail stays short and encodes as UTF-8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

_PREVIEW_CHARS = 40
_DETAIL_CHARS = 200
_NON_FINITE_LITERALS = ("NaN", "Infinity")
# A number literal's start, and whether it has a fraction or an exponent (so it is a float).
_NUMBER_START = re.compile(r"-?\d*([.eE])?")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the message at ``index`` of the raw batch was rejected."""

    index: int
    reason: str
    detail: str


def describe(value: object) -> str:
    """Describe a parsed JSON value in a few words: its type, and a preview of a scalar.

    Containers are counted, never walked, so any nesting depth costs the same.

    Examples
    --------
    >>> describe([[[[]]]]), describe({"a": 1, "b": 2}), describe(None), describe(True)
    ('a list of 1 item', 'an object of 2 keys', 'null', 'bool true')
    >>> describe("x" * 100)
    "str 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'..."
    >>> describe(7), describe(2.5), describe(10**400)
    ('int 7', 'float 2.5', 'an integer of 1329 bits')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool true" if value else "bool false"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"an object of {len(value)} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, str):
        more = "..." if len(value) > _PREVIEW_CHARS else ""
        return f"str {value[:_PREVIEW_CHARS]!r}{more}"
    if isinstance(value, int):
        # Past ~4300 digits str(int) raises, and long before that it is no use to a reader.
        bits = value.bit_length()
        return f"int {value}" if bits <= 64 else f"an integer of {bits} bits"
    if isinstance(value, float):
        return f"float {value!r}"
    return f"a value of type {type(value).__name__}"


def exception_text(exc: BaseException) -> str:
    """The type and a clipped message of ``exc``, as a detail.

    Examples
    --------
    >>> exception_text(KeyError("amount"))
    "KeyError: 'amount'"
    >>> len(exception_text(ValueError("x" * 500)))
    203
    """
    try:
        message = str(exc)
    except Exception:  # a message that cannot even be turned into text
        message = "(no message)"
    return clip(f"{type(exc).__name__}: {message}")


def clip(text: str, limit: int = _DETAIL_CHARS) -> str:
    r"""``text`` cut to ``limit`` characters, with anything UTF-8 cannot encode escaped.

    Examples
    --------
    >>> clip("abcdef", 3), clip("lone " + chr(0xD800)).encode()
    ('abc...', b'lone \\ud800')
    """
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def unparsable(i: int, exc: orjson.JSONDecodeError) -> Rejection:
    """The rejection of message ``i``, which strict JSON (orjson) refused with ``exc``.

    NaN, Infinity and numbers beyond a double are valid to many JSON writers but not to strict
    JSON; the error's position names them without parsing the message again.

    Examples
    --------
    >>> def refused(text: bytes) -> Rejection:
    ...     try:
    ...         orjson.loads(text)
    ...     except orjson.JSONDecodeError as exc:
    ...         return unparsable(0, exc)
    ...     raise AssertionError("parsed")
    >>> [refused(t).reason for t in (b'{"a": NaN}', b'{"a": -Infinity}', b'[1e999]', b'[1')]
    ['not_finite', 'not_finite', 'not_finite', 'not_json']
    >>> refused(b"9" * 400).detail
    'integer too large for a double at char 0'
    """
    text = exc.doc if isinstance(exc.doc, str) else ""
    pos = exc.pos if isinstance(exc.pos, int) else 0
    if text.startswith(_NON_FINITE_LITERALS, pos):
        return Rejection(i, "not_finite", "event holds NaN or Infinity")
    if isinstance(exc.msg, str) and exc.msg.startswith("number is infinity"):
        literal = _NUMBER_START.match(text, pos, pos + 400)
        if literal is not None and literal.group(1):
            return Rejection(i, "not_finite", f"number too large for a double at char {pos}")
        return Rejection(i, "not_json", f"integer too large for a double at char {pos}")
    return Rejection(i, "not_json", clip(f"not valid JSON: {exc}"))
