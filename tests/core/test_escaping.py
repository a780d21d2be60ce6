"""XEP-0106 JID escaping: the §5 examples, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core.escaping import ESCAPES, escape, unescape
from roost.core.jid import JID

#: XEP-0106 §5 table 3 ("Examples"): unescaped localpart -> escaped localpart
EXAMPLES = [
    ("space cadet", r"space\20cadet"),
    ('call me "ishmael"', r"call\20me\20\22ishmael\22"),
    ("at&t guy", r"at\26t\20guy"),
    ("d'artagnan", r"d\27artagnan"),
    ("/.fanboy", r"\2f.fanboy"),
    ("::foo::", r"\3a\3afoo\3a\3a"),
    ("<foo>", r"\3cfoo\3e"),
    ("user@host", r"user\40host"),
    (r"c:\net", r"c\3a\net"),
    (r"c:\\net", r"c\3a\\net"),
    (r"c:\cool stuff", r"c\3a\cool\20stuff"),
    (r"c:\5commas", r"c\3a\5c5commas"),
]


@pytest.mark.parametrize(("raw", "escaped"), EXAMPLES)
def test_examples(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped
    assert unescape(escaped) == raw
    assert JID.parse(f"{escaped}@example.com").local == escaped  # a valid localpart


@pytest.mark.parametrize("bad", [" leading", "trailing ", " "])
def test_spaces_at_the_ends_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        escape(bad)


@given(st.text(alphabet=st.sampled_from([*ESCAPES, "a", "5", "c", "2", "0", "f"]), max_size=30))
def test_round_trip(text: str) -> None:
    if text.startswith(" ") or text.endswith(" "):
        return
    escaped = escape(text)
    assert unescape(escaped) == text
    assert not set(escaped) & (set(ESCAPES) - {"\\"})
