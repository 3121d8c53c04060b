"""Config loading: TOML files, dicts, Config objects, and precise errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit import Config, ConfigError
from ratelimit.http.config import load_config

FULL = """
backend = "memory://"
key = "ip"
headers = "both"
on_error = "deny"
trusted_proxies = ["10.0.0.0/8", "2001:db8::1"]
ipv6_prefix = 56
proxy_header = "forwarded"
shadow = true
max_delay = 2.5

[[rules]]
name = "login"
path = "/auth/login"
methods = ["post"]
limit = "5/minute"
algorithm = "fixed_window"

[[rules]]
name = "api"
path = "/api/**"
limits = [{ rate = "10/second", burst = 20 }, { rate = "1000/hour", burst = 1500 }]
algorithm = "token_bucket"
key = "header:x-api-key"
cost = 2

[[rules]]
name = "upload"
path = "/upload/{bucket}"
limit = "2/second"
algorithm = "leaky_bucket"
mode = "shape"
burst = 10

[[rules]]
path = "/healthz"
exempt = true
"""


def write(tmp_path: Path, text: str, name: str = "ratelimit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_file_loads_every_key(tmp_path: Path) -> None:
    """Every documented key of a TOML file ends up in the Config and its rules."""
    config = load_config(write(tmp_path, FULL))
    assert config.backend == "memory://"
    assert config.headers == "both" and config.on_error == "deny" and config.shadow is True
    assert config.trusted_proxies == ("10.0.0.0/8", "2001:db8::1")
    assert config.ipv6_prefix == 56 and config.proxy_header == "forwarded"
    assert config.max_delay == 2.5
    login, api, upload, health = config.rules
    assert login.methods == ("POST",) and [str(x) for x in login.limits] == [
        "5/minute (fixed_window)"
    ]
    assert api.key == "header:x-api-key" and api.cost == 2
    assert [limit.burst for limit in api.limits] == [20, 1500]
    assert [limit.name for limit in api.limits] == ["api.0", "api.1"]
    assert upload.limits[0].mode == "shape" and upload.limits[0].max_delay == 2.5
    assert health.exempt and health.limits == () and health.name == "/healthz"


def test_dict_and_config_sources_are_equivalent(tmp_path: Path) -> None:
    """A dict of the TOML shape and a Config object give the same config as the file."""
    import tomllib

    data = tomllib.loads(FULL)
    from_file = load_config(write(tmp_path, FULL))
    from_dict = load_config(data)
    assert from_dict == from_file
    assert load_config(from_dict) is from_dict


def test_defaults() -> None:
    """An empty config has the documented defaults and no rules."""
    config = load_config({})
    assert (config.backend, config.key, config.headers, config.on_error) == (
        "memory://",
        "ip",
        "ietf",
        "allow",
    )
    assert config.trusted_proxies == () and config.ipv6_prefix == 64 and not config.shadow
    assert config.max_delay == 5.0 and config.rules == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[rules]]\npath="/a"\nlimit="1/s"\n[[rules]]\npath="/b"\nlimit="1/s"\n'
            '[[rules]]\npath="/c"\nlimit="10/fortnight"\n',
            "ratelimit.toml: rules[2].limit: invalid rate '10/fortnight': unknown unit",
        ),
        ('[[rules]]\npath="/a"\nlimits=["1/s", "0/s"]\n', "rules[0].limits[1]: "),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nalgorithm="magic"\n', "rules[0].algorithm: unknown"),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nburst=5\n', "rules[0].burst: burst is for"),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nalgorithm="leaky_bucket"\nmode="x"\n', ".mode: "),
        ('[[rules]]\npath="/a"\nlimit="1/s"\ncost=0\n', "rules[0].cost: must be a whole"),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nmethods="GET"\n', "rules[0].methods: must be a"),
        (
            '[[rules]]\npath="/a"\nlimit="1/s"\nmethods=["G T"]\n',
            "rules[0].methods: unknown method 'G T'",
        ),
        ('[[rules]]\npath="a"\nlimit="1/s"\n', "rules[0].path: a path must be text starting"),
        ('[[rules]]\npath="/a*"\nlimit="1/s"\n', "rules[0].path: invalid path '/a*'"),
        ('[[rules]]\npath="/a/{x"\nlimit="1/s"\n', "rules[0].path: invalid path"),
        ('[[rules]]\nlimit="1/s"\n', "rules[0].path: missing"),
        ('[[rules]]\npath="/a"\n', "rules[0].limit: a rule needs"),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nlimits=["1/s"]\n', "rules[0].limits: give either"),
        ('[[rules]]\npath="/a"\nlimits=[]\n', "rules[0].limits: must be a non-empty list"),
        ('[[rules]]\npath="/a"\nexempt=true\nlimit="1/s"\n', "rules[0].exempt: an exempt rule"),
        ('[[rules]]\npath="/a"\nexempt=true\ncost=2\n', "rules[0].cost: an exempt rule"),
        ('[[rules]]\npath="/a"\nexempt="yes"\nlimit="1/s"\n', "rules[0].exempt: must be true"),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nkey="header:"\n', "rules[0].key: invalid key"),
        ('[[rules]]\npath="/a"\nlimit="1/s"\nkey="nosuchmod:f"\n', "rules[0].key: invalid key"),
        ('[[rules]]\nname=""\npath="/a"\nlimit="1/s"\n', "rules[0].name: must be non-empty"),
        (
            '[[rules]]\nname="x"\npath="/a"\nlimit="1/s"\n[[rules]]\nname="x"\npath="/b"\n'
            'limit="1/s"\n',
            "rules[1].name: duplicate rule name 'x'",
        ),
        ('rules = "no"\n', "ratelimit.toml: rules: must be a list"),
        ('backend = "localhost"\n', "ratelimit.toml: backend: expected a URL"),
        ('key = "cookie"\n', "ratelimit.toml: key: invalid key 'cookie'"),
        ('headers = "all"\n', "ratelimit.toml: headers: must be one of ietf, legacy, both, none"),
        ('on_error = "panic"\n', "ratelimit.toml: on_error: must be one of allow, deny"),
        ('proxy_header = "x-real-ip"\n', "ratelimit.toml: proxy_header: must be one of"),
        ('trusted_proxies = ["10.0.0.0/33"]\n', "trusted_proxies[0]: invalid network"),
        ('trusted_proxies = "10.0.0.0/8"\n', "trusted_proxies: must be a list"),
        ("ipv6_prefix = 129\n", "ratelimit.toml: ipv6_prefix: must be a whole number 1..128"),
        ("ipv6_prefix = true\n", "ipv6_prefix: must be a whole number"),
        ('shadow = "yes"\n', "ratelimit.toml: shadow: must be true or false"),
        ("max_delay = -1\n", "ratelimit.toml: max_delay: must be a number"),
        ("max_delay = inf\n", "ratelimit.toml: max_delay: must be a number"),
    ],
)
def test_invalid_values_name_file_key_and_rule(tmp_path: Path, text: str, message: str) -> None:
    """Each invalid value raises ConfigError naming the file, the key and the rule index."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_unknown_top_level_key_lists_valid_keys(tmp_path: Path) -> None:
    """An unknown top-level key is rejected with the list of valid keys."""
    with pytest.raises(ConfigError, match=r"unknown key 'backends' \(valid keys: backend, key"):
        load_config(write(tmp_path, 'backends = "memory://"\n'))


def test_unknown_rule_key_lists_valid_keys(tmp_path: Path) -> None:
    """An unknown rule key is rejected with its rule index and the valid rule keys."""
    text = '[[rules]]\npath="/a"\nlimit="1/s"\nmethod="GET"\n'
    with pytest.raises(ConfigError, match=r"rules\[0\]\.unknown key 'method' \(valid keys: name"):
        load_config(write(tmp_path, text))


def test_missing_file_and_bad_toml_name_the_file(tmp_path: Path) -> None:
    """A missing file and invalid TOML are ConfigErrors naming the file."""
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(write(tmp_path, "rules = [", "bad.toml"))


def test_dict_errors_name_the_given_source() -> None:
    """Dict configs name their source (``config`` by default, or the name given)."""
    with pytest.raises(ConfigError, match=r"^config: headers"):
        load_config({"headers": "x"})
    with pytest.raises(ConfigError, match=r"^settings\.RATELIMIT: rules\[0\]\.path"):
        load_config({"rules": [{"limit": "1/s"}]}, name="settings.RATELIMIT")
    with pytest.raises(ConfigError, match="rules\\[0\\]: must be a table"):
        load_config({"rules": ["/a"]})


def test_bad_source_type() -> None:
    """Something that is not a path, dict or Config is a ConfigError."""
    with pytest.raises(ConfigError, match="config must be a TOML path"):
        load_config(42)  # type: ignore[arg-type]


def test_unnamed_rules_get_stable_distinct_names() -> None:
    """Unnamed rules are named from their methods and path, suffixed when repeated."""
    config = load_config(
        {
            "rules": [
                {"path": "/a", "limit": "1/s"},
                {"path": "/a", "methods": ["post"], "limit": "1/s"},
                {"path": "/a", "limit": "2/s"},
                {"name": "/b", "path": "/x", "limit": "1/s"},
                {"path": "/b", "limit": "1/s"},
            ]
        }
    )
    assert [rule.name for rule in config.rules] == ["/a", "POST /a", "/a #2", "/b", "/b #2"]
    ids = [limit.id for rule in config.rules for limit in rule.limits]
    assert len(set(ids)) == len(ids)


def test_callable_key_in_a_dict_config() -> None:
    """A Python callable is accepted as a key in a dict config."""

    def tenant(request: object) -> str:
        return "t1"

    config = load_config({"key": tenant, "rules": [{"path": "/", "limit": "1/s"}]})
    assert config.key is tenant
    assert config.rules[0].counter_key("t1").endswith(":t1")


def test_module_callable_key_is_imported_at_start_up() -> None:
    """A 'module:callable' key is imported when the config loads; a missing one fails then."""
    load_config({"key": "os.path:basename"})
    with pytest.raises(ConfigError, match=r"key: invalid key 'os\.path:nothing'"):
        load_config({"key": "os.path:nothing"})
    with pytest.raises(ConfigError, match="not callable"):
        load_config({"key": "os:sep"})


def test_counter_key_and_rule_lookup() -> None:
    """Rule.counter_key gives the backend key of a client identity, per key kind."""
    config = load_config(
        {
            "rules": [
                {"name": "a", "path": "/a", "limit": "1/s"},
                {"name": "b", "path": "/b", "limit": "1/s", "key": "header:X-Api-Key"},
                {"name": "c", "path": "/c", "limit": "1/s", "key": "global"},
                {"name": "d", "path": "/d", "limit": "1/s", "key": "user"},
            ]
        }
    )
    assert config.rule("a").counter_key("203.0.113.7") == "ip:203.0.113.7"
    assert config.rule("b").counter_key("k1") == "header:x-api-key:k1"
    assert config.rule("c").counter_key("anything") == "global"
    assert config.rule("d").counter_key("42") == "user:42"
    assert config.rule("d").counter_key("203.0.113.7", kind="ip") == "ip:203.0.113.7"
    assert config.rule("a").counter_key("x" * 500).startswith("ip:sha256:")
    with pytest.raises(KeyError):
        config.rule("zzz")


def test_config_object_validates_directly() -> None:
    """Config(...) built in code validates like a file and accepts rule dicts."""
    config = Config(rules=[{"name": "r", "path": "/r", "limit": "3/s"}])  # type: ignore[list-item]
    assert config.rules[0].limits[0].rate.limit == 3
    with pytest.raises(ConfigError, match=r"^config: on_error"):
        Config(on_error="maybe")


def test_describe_for_the_cli() -> None:
    """Rule.describe gives a plain summary of a rule."""
    rule = load_config({"rules": [{"name": "r", "path": "/r", "limit": "3/second"}]}).rules[0]
    assert rule.describe() == {
        "name": "r",
        "path": "/r",
        "methods": None,
        "limits": ["3/second (fixed_window)"],
        "key": None,
        "cost": 1,
        "exempt": False,
        "tiers": {},
        "count": "all",
        "ban": None,
        "allow": [],
        "deny": [],
        "charge": None,
        "unit": "requests",
    }


def test_config_counter_key_applies_inherited_key_and_ipv6_prefix() -> None:
    """Config.counter_key uses the config's key for rules without one, and its ipv6_prefix."""
    config = load_config(
        {
            "key": "header:x-api-key",
            "ipv6_prefix": 48,
            "rules": [
                {"name": "inherits", "path": "/a", "limit": "1/s"},
                {"name": "by-ip", "path": "/b", "limit": "1/s", "key": "ip"},
            ],
        }
    )
    assert config.counter_key("inherits", "k1") == "header:x-api-key:k1"
    assert config.counter_key("inherits", "192.0.2.1", kind="ip") == "ip:192.0.2.1"
    assert config.counter_key("by-ip", "2001:db8:1:2::9") == "ip:2001:db8:1::/48"
    assert config.rule("by-ip").counter_key("2001:db8:1:2::9") == "ip:2001:db8:1:2::/64"
