"""Tests for roost.server.config: TOML -> typed, validated settings."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from roost.server.config import (
    AuthConfig,
    C2SConfig,
    Config,
    ConfigError,
    LogConfig,
    RegistrationConfig,
    StorageConfig,
    TLSConfig,
    config_from_dict,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "roost.example.toml"
BASE = Path("/srv/roost")


def error_for(data: dict[str, object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, BASE)
    return info.value


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.domains == ("localhost",)
    assert config.data_dir == tmp_path / "data"
    assert config.c2s == C2SConfig()
    assert config.c2s.port == 5222
    assert config.c2s.direct_tls_port == 5223
    assert config.tls == TLSConfig(None, None)
    assert config.auth.mechanisms[0] == "SCRAM-SHA-256-PLUS"
    assert config.source is None


def test_empty_dict_gives_defaults() -> None:
    config = config_from_dict({}, BASE)
    assert config == Config(data_dir=BASE / "data")


def test_values_are_typed_and_frozen() -> None:
    config = config_from_dict({"c2s": {"idle_timeout": 5, "port": 0}}, BASE)
    assert config.c2s.idle_timeout == 5.0
    assert isinstance(config.c2s.idle_timeout, float)
    assert config.c2s.port == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.c2s.port = 1  # type: ignore[misc]


def test_example_file_loads_with_defaults() -> None:
    config = load_config(EXAMPLE)
    assert config.source == EXAMPLE
    assert config.data_dir == EXAMPLE.parent / "data"
    assert config.domains == Config().domains
    assert config.c2s == C2SConfig()
    assert config.tls == TLSConfig()
    assert config.auth == AuthConfig()
    assert config.registration == RegistrationConfig()
    assert config.storage == StorageConfig()
    assert config.log == LogConfig()


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for f in dataclasses.fields(Config):
        if f.name == "source":
            continue
        if f.name in ("domains", "data_dir", "admins", "run_as"):
            assert re.search(rf"^(# )?{f.name} = ", text, re.M), f.name
            continue
        section = getattr(Config(), f.name)
        block = text.split(f"[{f.name}]\n", 1)[1].split("\n[", 1)[0]
        for sub in dataclasses.fields(section):
            if sub.metadata.get("internal"):
                continue  # not a key of its own (``[modules.NAME]`` tables)
            assert re.search(rf"^(# )?{sub.name} = ", block, re.M), f"{f.name}.{sub.name}"


def test_load_from_file_resolves_paths(tmp_path: Path) -> None:
    path = tmp_path / "roost.toml"
    path.write_text(
        'domains = ["Example.ORG", "chat.example.org."]\n'
        'data_dir = "state"\n'
        '[tls]\ncert = "c.pem"\nkey = "/abs/k.pem"\n'
        '[log]\nlevel = "debug"\n'
    )
    config = load_config(path)
    assert config.domains == ("example.org", "chat.example.org")
    assert config.data_dir == tmp_path / "state"
    assert config.tls.cert == tmp_path / "c.pem"
    assert config.tls.key == Path("/abs/k.pem")
    assert config.log.level == "debug"


def test_domains_are_normalised_as_jid_domainparts() -> None:
    """RFC 7622 §3.2: lower case, no trailing dot, IDNA (through roost.core.jid)."""
    config = config_from_dict({"domains": ["Example.ORG.", "BÜCHER.example"]}, BASE)
    assert config.domains == ("example.org", "bücher.example")
    assert error_for({"domains": ["a..b"]}).key == "domains[0]"
    assert "a..b" in error_for({"domains": ["a..b"]}).message


def test_idn_domain_is_normalised() -> None:
    config = config_from_dict({"domains": ["BÜCHER.example"]}, BASE)
    assert config.domains == ("bücher.example",)


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"c2s": {"port": "abc"}}, "c2s.port", "must be an integer between 0 and 65535, got 'abc'"),
        ({"admins": ["localhost"]}, "admins[0]", "must be a bare account JID (user@domain)"),
        ({"admins": ["a@localhost/res"]}, "admins[0]", "must be a bare account JID"),
        ({"admins": "a@localhost"}, "admins", "must be a list of strings"),
        ({"c2s": {"port": 70000}}, "c2s.port", "between 0 and 65535, got 70000"),
        ({"c2s": {"port": True}}, "c2s.port", "must be an integer"),
        ({"c2s": {"port": 1.0}}, "c2s.port", "must be an integer"),
        ({"c2s": {"prot": 1}}, "c2s.prot", "unknown key (did you mean 'port'?)"),
        ({"c2s": {"idle_timeout": "1"}}, "c2s.idle_timeout", "must be a number >= 0"),
        ({"c2s": {"idle_timeout": -1}}, "c2s.idle_timeout", "must be a number >= 0"),
        ({"c2s": {"idle_timeout": float("inf")}}, "c2s.idle_timeout", "got inf"),
        ({"c2s": {"idle_timeout": False}}, "c2s.idle_timeout", "must be a number"),
        ({"c2s": {"require_encryption": 1}}, "c2s.require_encryption", "must be a boolean"),
        ({"c2s": {"max_stanza_size": 100}}, "c2s.max_stanza_size", "integer >= 10000"),
        ({"c2s": {"interfaces": "0.0.0.0"}}, "c2s.interfaces", "must be a non-empty list"),
        ({"c2s": {"interfaces": []}}, "c2s.interfaces", "must be a non-empty list"),
        ({"c2s": {"interfaces": ["nope"]}}, "c2s.interfaces[0]", "must be an IP address"),
        ({"c2s": {"interfaces": [1]}}, "c2s.interfaces[0]", "must be a string, got 1"),
        ({"c2s": 5}, "c2s", "must be a table, got 5"),
        (  # issue 14: two listeners on one port
            {"c2s": {"port": 5222, "direct_tls_port": 5222}},
            "c2s.direct_tls_port",
            "5222 is also c2s.port; give each listener its own port",
        ),
        ({"s2s": {"port": 5222}}, "s2s.port", "5222 is also c2s.port"),
        (
            {"c2s": {"interfaces": ["127.0.0.1"]}, "s2s": {"port": 5222}},
            "s2s.port",
            "5222 is also c2s.port",  # s2s listens on every address, 127.0.0.1 among them
        ),
        (
            {"auth": {"scram_iterations": 1000}},
            "auth.scram_iterations",
            "between 4096 and 10000000",
        ),
        ({"auth": {"mechanisms": ["PLAIN", "X"]}}, "auth.mechanisms[1]", "must be one of"),
        ({"auth": {"mechanisms": ["PLAIN", "PLAIN"]}}, "auth.mechanisms[1]", "duplicate"),
        ({"log": {"level": "verbose"}}, "log.level", "one of 'debug', 'info'"),
        ({"storage": {"backend": "mysql"}}, "storage.backend", "one of 'sqlite'"),
        ({"domains": []}, "domains", "must be a non-empty list of strings"),
        ({"domains": ["a..b"]}, "domains[0]", "'a..b'"),
        ({"domains": ["x@y"]}, "domains[0]", "'x@y'"),
        ({"domains": ["x.org", "X.org"]}, "domains[1]", "duplicate"),
        ({"data_dir": 3}, "data_dir", "must be a path"),
        ({"tls": {"cert": "a.pem"}}, "tls", "cert and key must be set together"),
        ({"tls": {"key": ""}}, "tls.key", "must be a path"),
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"source": "x"}, "source", "unknown key"),
        ({"archive": {"expire_after": "1 week"}}, "archive.expire_after", "must be a duration"),
        ({"archive": {"expire_after": "-1d"}}, "archive.expire_after", "got '-1d'"),
        ({"archive": {"expire_after": True}}, "archive.expire_after", "must be a duration"),
        ({"archive": {"cleanup_interval": 0}}, "archive.cleanup_interval", "duration >= 1 s"),
        ({"archive": {"max_items": -1}}, "archive.max_items", "integer >= 0"),
        ({"archive": {"default_policy": "sometimes"}}, "archive.default_policy", "one of"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], key: str, fragment: str) -> None:
    err = error_for(data)
    assert err.key == key
    assert fragment in err.message
    assert str(err) == f"{key}: {err.message}"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0),
     ("7d", 604800.0), ("1w", 604800.0), (" 2W ", 1209600.0), ("1y", 31536000.0), ("600", 600.0)],
)
def test_archive_durations(value: object, seconds: float) -> None:
    config = config_from_dict({"archive": {"expire_after": value}}, Path("."))
    assert config.archive.expire_after == seconds


def test_exact_message_format() -> None:
    err = error_for({"c2s": {"port": "abc"}})
    assert str(err) == "c2s.port: must be an integer between 0 and 65535, got 'abc'"


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[c2s]\nport = = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == str(path)
    assert "line" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.key == str(tmp_path / "nope.toml")
    assert "cannot read" in info.value.message


def test_same_port_on_other_addresses_is_fine() -> None:
    """Listeners on one port but disjoint addresses (or families) do not clash."""
    config = config_from_dict(
        {
            "c2s": {"port": 5222, "interfaces": ["127.0.0.1"]},
            "s2s": {"port": 5222, "interfaces": ["127.0.0.2", "::1"]},
        },
        BASE,
    )
    assert config.s2s.port == config.c2s.port
    # Direct TLS 0 is "off", not a port
    assert config_from_dict({"c2s": {"direct_tls_port": 0}, "s2s": {"direct_tls_port": 0}}, BASE)
