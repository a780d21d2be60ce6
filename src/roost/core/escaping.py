"""XEP-0106 JID Escaping: characters a localpart may not hold, written as ``\\hh``.

Pure string functions. ``escape`` turns a user name (an e-mail address, say) into a valid
localpart; ``unescape`` shows it back. XEP-0106 §4.2/§4.3: only the ten characters of the
table are escaped; a backslash is escaped only where it would otherwise start one of the
ten sequences, so unescaping an escaped string gives the original back.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ESCAPES", "escape", "unescape"]

#: XEP-0106 §3 table 1: character -> escape sequence
ESCAPES: Final[dict[str, str]] = {
    " ": r"\20",
    '"': r"\22",
    "&": r"\26",
    "'": r"\27",
    "/": r"\2f",
    ":": r"\3a",
    "<": r"\3c",
    ">": r"\3e",
    "@": r"\40",
    "\\": r"\5c",
}
_SEQUENCE = re.compile(r"\\(20|22|26|27|2f|3a|3c|3e|40|5c)")
_UNESCAPES: Final[dict[str, str]] = {seq[1:]: char for char, seq in ESCAPES.items()}
_SPECIAL = re.compile(r"[ \"&'/:<>@]|\\(?=(?:20|22|26|27|2f|3a|3c|3e|40|5c))")


def escape(node: str) -> str:
    """XEP-0106 §4.2: escape a would-be localpart. Raises ``ValueError`` for a leading or
    trailing space (§4.2 rule 2: such a localpart is not allowed at all)."""
    if node.startswith(" ") or node.endswith(" "):
        raise ValueError("a localpart may not begin or end with a space (XEP-0106 §4.2)")
    return _SPECIAL.sub(lambda m: ESCAPES[m.group(0)], node)


def unescape(node: str) -> str:
    """XEP-0106 §4.3: the escape sequences of the table back to their characters."""
    return _SEQUENCE.sub(lambda m: _UNESCAPES[m.group(1)], node)
