"""A strict reader of the Lua data files Prosody's ``internal`` storage writes (never run).

Prosody's datamanager writes a ``.dat`` file as ``return <value>;`` and a ``.list`` file as
a sequence of ``item(<value>);`` calls. A value is a string, a number, ``true``, ``false``,
``nil`` or a table constructor (Lua 5.4 manual §3.4.9). This reads only that subset of Lua
(§3.1 lexical conventions for strings, numbers and names): anything else, such as an
expression, a function call other than ``item`` or a comment, is an error. Nothing is
executed, so a file planted in a data directory cannot run code.

Why not a PyPI package: ``slpp`` and ``luadata`` are unmaintained (last releases 2020 and
2021) and lenient; ``luaparser`` parses all of Lua into an AST through an ANTLR runtime,
much more than this needs, and leaves decoding strings (``\\ddd`` bytes of UTF-8) to us.

A table is a ``dict``: its positional items have the keys 1, 2, ... as in Lua, and keys
are strings, numbers or booleans (``[true]`` and ``[1]`` in one table are refused as one
key twice, as Python's ``True == 1``; Prosody writes no such table). Strings are Lua byte
strings decoded as UTF-8 (Prosody keeps text as UTF-8); invalid UTF-8 is an error.
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = ["LuaDataError", "LuaValue", "array", "parse_dat", "parse_list"]

LuaValue = str | int | float | bool | None | dict[object, object]

#: deeper tables than this are refused (Prosody's stanzas nest a few levels)
MAX_DEPTH: Final = 200

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
)
_RETURN = re.compile(r"return(?![A-Za-z0-9_])")
_SPACE = re.compile(r"[ \t\r\n\f\v]*")
#: what Prosody writes for values that have no literal (NaN and the infinities)
_SPECIAL_NUMBERS: Final = {"(0/0)": math.nan, "(1/0)": math.inf, "(-1/0)": -math.inf}
_SIMPLE_ESCAPES: Final = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
    "\n": b"\n",
}
_KEYWORDS: Final = {"true": True, "false": False, "nil": None}


class LuaDataError(ValueError):
    """The text is not a Lua data file of the kind Prosody writes."""


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> LuaDataError:
        line = self.text.count("\n", 0, self.pos) + 1
        return LuaDataError(f"line {line}: {what}")

    def skip(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()
        if self.text.startswith("--", self.pos):
            raise self.error("comments are not part of Prosody's data files")

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def expect(self, token: str) -> None:
        self.skip()
        if not self.text.startswith(token, self.pos):
            found = self.text[self.pos : self.pos + 10] or "the end"
            raise self.error(f"expected {token!r}, found {found!r}")
        self.pos += len(token)

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def value(self, depth: int = 0) -> LuaValue:
        char = self.peek()
        if char == "{":
            return self.table(depth + 1)
        if char in ('"', "'"):
            return self.string()
        if char == "[" and self.text[self.pos + 1 : self.pos + 2] in ("[", "="):
            return self.long_string()
        for literal, number in _SPECIAL_NUMBERS.items():
            if self.text.startswith(literal, self.pos):
                self.pos += len(literal)
                return number
        if char == "-":
            self.pos += 1
            negated = self.value(depth)
            if isinstance(negated, bool) or not isinstance(negated, int | float):
                raise self.error("'-' before something that is not a number")
            return -negated
        name = _NAME.match(self.text, self.pos)
        if name is not None:
            if name.group() not in _KEYWORDS:
                raise self.error(f"{name.group()!r} is not a value")
            self.pos = name.end()
            return _KEYWORDS[name.group()]
        return self.number()

    def number(self) -> int | float:
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            found = self.text[self.pos : self.pos + 10] or "the end"
            raise self.error(f"expected a value, found {found!r}")
        self.pos = match.end()
        token = match.group()
        if token[:2] in ("0x", "0X"):
            if "." in token or "p" in token.lower():
                return float.fromhex(token)
            return int(token, 16)
        if any(c in token for c in ".eE"):
            return float(token)
        return int(token)

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = bytearray()
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.error("unfinished string")
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                break
            if char == "\n":
                raise self.error("unfinished string (a line break in it)")
            if char != "\\":
                out += char.encode("utf-8")
                self.pos += 1
                continue
            self.pos += 1
            out += self.escape()
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("a string that is not UTF-8") from None

    def escape(self) -> bytes:
        """Lua 5.4 manual §3.1: the escape sequences of a short string."""
        text = self.text
        char = text[self.pos : self.pos + 1]
        if char in _SIMPLE_ESCAPES:
            self.pos += 1
            return _SIMPLE_ESCAPES[char]
        if char == "z":
            self.pos += 1
            match = _SPACE.match(text, self.pos)
            assert match is not None
            self.pos = match.end()
            return b""
        if char == "x":
            digits = text[self.pos + 1 : self.pos + 3]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise self.error("\\x needs two hexadecimal digits")
            self.pos += 3
            return bytes([int(digits, 16)])
        if char == "u":
            match = re.compile(r"u\{([0-9a-fA-F]{1,8})\}").match(text, self.pos)
            if match is None or int(match.group(1), 16) > 0x10FFFF:
                raise self.error("a bad \\u{...} escape")
            self.pos = match.end()
            return chr(int(match.group(1), 16)).encode("utf-8", "surrogatepass")
        match = re.compile(r"[0-9]{1,3}").match(text, self.pos)
        if match is None or int(match.group()) > 255:
            raise self.error(f"an unknown escape \\{char}")
        self.pos = match.end()
        return bytes([int(match.group())])

    def long_string(self) -> str:
        match = re.compile(r"\[(=*)\[").match(self.text, self.pos)
        if match is None:
            raise self.error("a bad long string")
        close = "]" + match.group(1) + "]"
        end = self.text.find(close, match.end())
        if end < 0:
            raise self.error("unfinished long string")
        body = self.text[match.end() : end]
        self.pos = end + len(close)
        return body[1:] if body.startswith("\n") else body  # §3.1: a first newline is skipped

    def table(self, depth: int) -> dict[object, object]:
        if depth > MAX_DEPTH:
            raise self.error(f"tables nested deeper than {MAX_DEPTH}")
        self.expect("{")
        out: dict[object, object] = {}
        index = 1
        while self.peek() != "}":
            key: object
            if self.peek() == "[" and self.text[self.pos + 1 : self.pos + 2] not in ("[", "="):
                self.pos += 1
                key = self.value(depth)
                self.expect("]")
                self.expect("=")
                if key is None or (isinstance(key, float) and math.isnan(key)):
                    raise self.error("a table key that is nil or NaN")
                if isinstance(key, float) and key.is_integer():
                    key = int(key)  # Lua 5.4 §3.4.9: 2.0 and 2 are one key
            else:
                name = _NAME.match(self.text, self.pos)
                after = _SPACE.match(self.text, name.end()) if name is not None else None
                if (
                    name is not None
                    and after is not None
                    and self.text.startswith("=", after.end())
                    and not self.text.startswith("==", after.end())
                ):
                    if name.group() in _KEYWORDS:
                        raise self.error(f"{name.group()!r} cannot be a field name")
                    key = name.group()
                    self.pos = after.end() + 1
                else:
                    key = index
                    index += 1
            if key in out:
                raise self.error(f"the key {key!r} twice in one table")
            item = self.value(depth)
            if item is not None:  # a nil field is no field (Lua 5.4 §2.1)
                out[key] = item
            if self.peek() in (",", ";"):
                self.pos += 1
            elif self.peek() != "}":
                raise self.error("expected ',', ';' or '}' in a table")
        self.pos += 1
        return out


def parse_dat(text: str) -> LuaValue:
    """A ``.dat`` file: ``return <value>`` with an optional ``;``."""
    reader = _Reader(text)
    reader.skip()
    keyword = _RETURN.match(text, reader.pos)
    if keyword is None:
        raise reader.error("expected 'return <value>'")
    reader.pos = keyword.end()
    result = reader.value()
    if reader.peek() == ";":
        reader.pos += 1
    if not reader.at_end():
        raise reader.error("more after the value")
    return result


def parse_list(text: str) -> list[LuaValue]:
    """A ``.list`` file: the values of its ``item(<value>);`` calls, in order."""
    reader = _Reader(text)
    items = []
    while not reader.at_end():
        reader.expect("item")
        reader.expect("(")
        items.append(reader.value())
        reader.expect(")")
        if reader.peek() == ";":
            reader.pos += 1
    return items


def array(table: dict[object, object]) -> list[object]:
    """The positional items of a table (keys 1, 2, ... up to the first missing one)."""
    out = []
    index = 1
    while index in table:
        out.append(table[index])
        index += 1
    return out
