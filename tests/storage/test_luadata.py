"""The reader of Prosody's Lua data files: what Prosody 0.12 writes reads back, nothing else
does (no code runs), and a table written the way util/serialization.lua writes it reads
back as the value it came from."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.storage.luadata import LuaDataError, array, parse_dat, parse_list

# Verbatim shapes from a Debian Prosody 0.12 data directory (values changed).
ACCOUNT = """return {
	["salt"] = "c66852b2-b21e-4eda-9f7f-f80dab225fac";
	["iteration_count"] = 10000;
	["stored_key"] = "76cf806e781f53a9ec7e85a246a66b74d9e83ba9";
	["server_key"] = "4af386a44ca225d13d16c7d17c613435deaf13ab";
};
"""
ROSTER = """return {
	[false] = {
		["pending"] = {};
		["version"] = 1;
	};
	["bob@elsewhere.test"] = {
		["subscription"] = "none";
		["groups"] = {
			["Work"] = true;
		};
		["name"] = "Bob \\195\\137";
	};
};
"""
OFFLINE = """item({
	{
		"hello while you\\'re away <&>";
		["attr"] = {};
		["name"] = "body";
	};
	["name"] = "message";
	["attr"] = {
		["to"] = "alice@pros.test";
	};
	["when"] = 1796179833;
});
item({
	["name"] = "message";
	["attr"] = {};
});
"""


def test_prosody_files() -> None:
    account = parse_dat(ACCOUNT)
    assert account == {
        "salt": "c66852b2-b21e-4eda-9f7f-f80dab225fac",
        "iteration_count": 10000,
        "stored_key": "76cf806e781f53a9ec7e85a246a66b74d9e83ba9",
        "server_key": "4af386a44ca225d13d16c7d17c613435deaf13ab",
    }
    roster = parse_dat(ROSTER)
    assert isinstance(roster, dict)
    assert roster[False] == {"pending": {}, "version": 1}
    assert roster["bob@elsewhere.test"] == {
        "subscription": "none",
        "groups": {"Work": True},
        "name": "Bob É",  # \195\137: the UTF-8 bytes of É
    }
    first, second = parse_list(OFFLINE)
    assert isinstance(first, dict) and first["when"] == 1796179833
    body = array(first)[0]
    assert isinstance(body, dict) and array(body) == ["hello while you're away <&>"]
    assert second == {"name": "message", "attr": {}}
    assert parse_list("") == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("return 1", 1),
        ("return -2.5e3;", -2500.0),
        ("return 0x1F", 31),
        ("return (1/0)", math.inf),
        ("return (-1/0)", -math.inf),
        ("return nil", None),
        ("return { 1, 2; [3] = 3, x = 4 }", {1: 1, 2: 2, 3: 3, "x": 4}),
        ("return { [2.0] = 'a', b = nil }", {2: "a"}),  # 2.0 is the key 2; nil is no field
        ('return "\\x41\\u{e9}\\65\\z  \n  B\\\n"', "AéAB\n"),
        ("return [==[long ]] string]==]", "long ]] string"),
        ("return [[\nfirst newline skipped]]", "first newline skipped"),
        ("return {{}}", {1: {}}),
    ],
)
def test_values(text: str, value: object) -> None:
    assert parse_dat(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "return",
        "returnx 1",
        "return os.execute('rm -rf /')",  # a call: never run, refused
        "return io",
        "return 1 + 1",
        "return 1 -- a comment",
        "return {1 2}",
        "return {['a'] = 1, a = 2}",  # one key twice
        "return {[nil] = 1}",
        "return 'unfinished",
        "return 'line\nbreak'",
        "return '\\q'",
        "return '\\256'",
        "return '\\255'",  # a byte that is not UTF-8 text
        "return {" * 300 + "}" * 300,
        "return 1; return 2",
        "item(1) item(",
        "print(1)",
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(LuaDataError):
        parse_list(text) if text.startswith(("item", "print")) else parse_dat(text)


def _serialize(value: object, depth: int = 1) -> str:
    """As Prosody's util/serialization.lua writes (default options)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        out = []
        for byte in value.encode("utf-8"):
            char = chr(byte)
            if char in "\"'\\":
                out.append("\\" + char)
            elif char == "\n":
                out.append("\\n")
            elif byte < 32 or byte >= 127:
                out.append(f"\\{byte:03d}")
            else:
                out.append(char)
        return '"' + "".join(out) + '"'
    assert isinstance(value, dict)
    items = []
    n = 1
    for k, v in value.items():
        if k == n and not isinstance(k, bool):
            n += 1
            items.append("\t" * depth + _serialize(v, depth + 1))
        else:
            items.append("\t" * depth + f"[{_serialize(k)}] = {_serialize(v, depth + 1)}")
    if not items:
        return "{}"
    return "{\n" + ";\n".join(items) + ";\n" + "\t" * (depth - 1) + "}"


_keys = st.one_of(st.text(max_size=8), st.integers(-5, 5))
_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**53), 2**53), st.text()),
    lambda inner: st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_round_trip(value: object) -> None:
    assert parse_dat(f"return {_serialize(value)};\n") == value
    assert parse_list(f"item({_serialize(value)});\n" * 2) == [value, value]
