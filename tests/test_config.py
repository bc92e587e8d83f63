"""gate.config: defaults equal config/gate.toml, env overrides, every bad key named (DESIGN §3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gate.config import (
    DEFAULT_RULES,
    ConfigError,
    Rule,
    Settings,
    load,
    mask_url,
    parse_listen,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "gate.toml"

RULE = """
[[rules]]
name = "{name}"
method = "{method}"
path = "{path}"
transaction = "new_purchase"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert caught.value.problems, "a ConfigError names at least one problem"
    return caught.value.problems


def test_shipped_file_equals_builtin_defaults() -> None:
    """§3: `gate` with no --config uses built-in defaults equal to the shipped config/gate.toml."""
    assert load(SHIPPED) == Settings()
    assert load(str(SHIPPED)) == load()


def test_documented_defaults() -> None:
    """§3: the defaults are the values DESIGN names."""
    settings = Settings()
    assert settings.server.listen == "0.0.0.0:8080"
    assert settings.server.workers == 1
    assert settings.server.shutdown_grace_s == 30
    assert settings.admin.listen == "127.0.0.1:9090"
    assert settings.admin.token == ""
    assert settings.upstream.url == "https://api.partnercenter.microsoft.com"
    assert settings.upstream.cloud == "public"
    assert settings.upstream.connect_timeout_s == 5
    assert settings.upstream.read_timeout_s == 120
    assert settings.policy.mode == "enforce"
    assert settings.policy.enforce_from == datetime(2018, 11, 7, tzinfo=UTC)
    assert settings.policy.subscription_edits == "seat_changes"
    assert settings.policy.enforce_percent == 100
    assert settings.policy.partners == {}
    assert settings.acceptance.positive_ttl_s == 3600
    assert settings.acceptance.negative_ttl_s == 5
    assert settings.acceptance.lookup_timeout_s == 3
    assert settings.acceptance.on_lookup_error == "block"
    assert settings.acceptance.max_entries == 1_000_000
    assert settings.acceptance.max_concurrent_lookups == 64
    assert settings.acceptance.stale_if_error_s == 86400
    assert settings.acceptance.snapshot_path == ""
    assert settings.identity.partner_header == ""
    assert settings.authz.listen == ""
    assert settings.log.level == "info"
    assert settings.log.format == "json"
    assert [rule.name for rule in settings.rules] == [rule["name"] for rule in DEFAULT_RULES]


def test_file_names_only_what_it_changes(tmp_path: Path) -> None:
    """§3: a file that names one key leaves every other key at its default."""
    settings = load(write(tmp_path, '[policy]\nmode = "observe"\n'))
    assert settings.policy.mode == "observe"
    assert settings.model_copy(update={"policy": Settings().policy}) == Settings()


def test_file_values_are_read(tmp_path: Path) -> None:
    """§3: each section's keys are read from the file, partner overrides lowercased (§1.1)."""
    settings = load(
        write(
            tmp_path,
            """
[upstream]
url = "http://127.0.0.1:8081/pc/"
cloud = "usgov"
[policy]
enforce_from = 2030-01-01T00:00:00Z
enforce_percent = 25
subscription_edits = "all"
[policy.partners."11111111-AAAA-4AAA-8AAA-111111111111"]
mode = "off"
[acceptance]
on_lookup_error = "allow"
[identity]
partner_header = "X-Partner-Tenant"
""",
        )
    )
    assert settings.upstream.url == "http://127.0.0.1:8081/pc"
    assert settings.upstream.cloud == "usgov"
    assert settings.policy.enforce_from == datetime(2030, 1, 1, tzinfo=UTC)
    assert settings.policy.enforce_percent == 25
    assert settings.policy.subscription_edits == "all"
    assert {k: v.mode for k, v in settings.policy.partners.items()} == {
        "11111111-aaaa-4aaa-8aaa-111111111111": "off"
    }
    assert settings.acceptance.on_lookup_error == "allow"
    assert settings.identity.partner_header == "X-Partner-Tenant"


def test_rules_in_a_file_replace_the_defaults(tmp_path: Path) -> None:
    """§3: a file that sets [[rules]] replaces the whole list; methods and paths are normalised."""
    settings = load(
        write(tmp_path, RULE.format(name="mine", method="post", path="/V1/Customers/{customer}/X"))
    )
    assert settings.rules == (
        Rule(
            name="mine",
            method="POST",
            path="/v1/customers/{customer}/x",
            transaction="new_purchase",
        ),
    )


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """§3: GATE_<SECTION>__<KEY> overrides a built-in default."""
    monkeypatch.setenv("GATE_UPSTREAM__URL", "http://upstream.example:9000")
    monkeypatch.setenv("GATE_POLICY__MODE", "observe")
    monkeypatch.setenv("GATE_ACCEPTANCE__NEGATIVE_TTL_S", "0.5")
    settings = load()
    assert settings.upstream.url == "http://upstream.example:9000"
    assert settings.policy.mode == "observe"
    assert settings.acceptance.negative_ttl_s == 0.5
    assert settings.upstream.cloud == "public"


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """§3: the environment wins over the file, key by key; the file's other keys stay."""
    path = write(
        tmp_path,
        '[policy]\nmode = "off"\nenforce_percent = 10\n'
        '[upstream]\nurl = "http://file.example"\ncloud = "china"\n',
    )
    monkeypatch.setenv("GATE_POLICY__MODE", "observe")
    monkeypatch.setenv("GATE_UPSTREAM__URL", "http://env.example")
    settings = load(path)
    assert settings.policy.mode == "observe"
    assert settings.upstream.url == "http://env.example"
    assert settings.policy.enforce_percent == 10
    assert settings.upstream.cloud == "china"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        pytest.param("GATE_POLICY__MODE", "strict", "policy.mode", id="mode"),
        pytest.param("GATE_POLICY__ENFORCE_PERCENT", "200", "policy.enforce_percent", id="percent"),
        pytest.param("GATE_UPSTREAM__URL", "ftp://x", "upstream.url", id="url"),
        pytest.param("GATE_SERVER__LISTEN", "8080", "server.listen", id="listen"),
    ],
)
def test_bad_env_value_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    """§3: a bad value from the environment is refused and named like a bad file key."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert [problem.split(":")[0] for problem in caught.value.problems] == [key]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param('[policy]\nmdoe = "observe"\n', "policy.mdoe", id="misspelt-key"),
        pytest.param('[plicy]\nmode = "observe"\n', "plicy", id="unknown-section"),
        pytest.param("listen = 1\n", "listen", id="top-level-key"),
        pytest.param('[policy]\nmode = "strict"\n', "policy.mode", id="bad-mode"),
        pytest.param(
            "[policy]\nenforce_percent = 200\n", "policy.enforce_percent", id="percent-200"
        ),
        pytest.param(
            "[policy]\nenforce_percent = -1\n", "policy.enforce_percent", id="percent-neg"
        ),
        pytest.param(
            "[policy]\nenforce_from = 2018-11-07T00:00:00\n",
            "policy.enforce_from",
            id="enforce-from-without-zone",
        ),
        pytest.param('[policy]\nenforce_from = "soon"\n', "policy.enforce_from", id="bad-date"),
        pytest.param(
            '[policy]\nsubscription_edits = "some"\n', "policy.subscription_edits", id="edits"
        ),
        pytest.param(
            '[policy.partners."p1"]\nmode = "later"\n', "policy.partners.p1.mode", id="partner-mode"
        ),
        pytest.param(
            '[policy.partners."p1"]\nmode = "off"\nmod = "x"\n',
            "policy.partners.p1.mod",
            id="partner-key",
        ),
        pytest.param(
            '[policy.partners."ABC"]\nmode = "off"\n[policy.partners."abc"]\nmode = "observe"\n',
            "policy.partners",
            id="partner-twice-by-case",
        ),
        pytest.param('[upstream]\nurl = "not a url"\n', "upstream.url", id="bad-url"),
        pytest.param('[upstream]\nurl = "ftp://host"\n', "upstream.url", id="url-scheme"),
        pytest.param('[upstream]\nurl = "https://host/?q=1"\n', "upstream.url", id="url-query"),
        pytest.param('[upstream]\nurl = "https://u:p@host"\n', "upstream.url", id="url-userinfo"),
        pytest.param('[upstream]\ncloud = "mars"\n', "upstream.cloud", id="bad-cloud"),
        pytest.param("[upstream]\nread_timeout_s = 0\n", "upstream.read_timeout_s", id="timeout-0"),
        pytest.param('[server]\nlisten = "8080"\n', "server.listen", id="listen-no-host"),
        pytest.param('[server]\nlisten = ":8080"\n', "server.listen", id="listen-empty-host"),
        pytest.param('[server]\nlisten = "host:99999"\n', "server.listen", id="listen-big-port"),
        pytest.param('[admin]\nlisten = "localhost:http"\n', "admin.listen", id="listen-name-port"),
        pytest.param('[authz]\nlisten = "nowhere"\n', "authz.listen", id="authz-listen"),
        pytest.param("[server]\nworkers = 0\n", "server.workers", id="workers-0"),
        pytest.param('[server]\nworkers = "two"\n', "server.workers", id="workers-string"),
        pytest.param(
            '[acceptance]\non_lookup_error = "retry"\n', "acceptance.on_lookup_error", id="on-error"
        ),
        pytest.param(
            "[acceptance]\nlookup_timeout_s = 0\n", "acceptance.lookup_timeout_s", id="lookup-0"
        ),
        pytest.param(
            '[identity]\npartner_header = "X Partner"\n', "identity.partner_header", id="header"
        ),
        pytest.param('[log]\nformat = "xml"\n', "log.format", id="log-format"),
        pytest.param(
            '[policy]\nagreement_types = ["MicrosoftPartnerAgreement"]\n',
            "policy.agreement_types",
            id="unknown-agreement-type",
        ),
        pytest.param(
            "[policy]\nagreement_types = []\n", "policy.agreement_types", id="no-agreement-type"
        ),
        pytest.param(
            '[policy]\naccepted_since = "April 2023"\n',
            "policy.accepted_since",
            id="bad-accepted-since",
        ),
        pytest.param(
            '[policy]\naccepted_since = "2023-04-01T00:00:00"\n',
            "policy.accepted_since",
            id="accepted-since-without-zone",
        ),
        pytest.param(
            '[policy]\nsubscription_edits = ["quantity", "autoRenew"]\n',
            "policy.subscription_edits",
            id="unknown-edit-field",
        ),
        pytest.param(
            '[policy]\nsubscription_edits = "terms"\n',
            "policy.subscription_edits",
            id="unknown-edit-mode",
        ),
        pytest.param(
            '[acceptance]\nlookup_token_file = "/nonexistent/token"\n',
            "acceptance.lookup_token_file",
            id="unreadable-token-file",
        ),
        pytest.param(
            RULE.format(name="r", method="POST", path="/v1/orders/{id}"),
            "rules.0.path",
            id="rule-without-customer",
        ),
        pytest.param(
            RULE.format(name="r", method="POST", path="/v1/{customer}/x/{customer}"),
            "rules.0.path",
            id="rule-customer-twice",
        ),
        pytest.param(
            RULE.format(name="r", method="POST", path="v1/customers/{customer}"),
            "rules.0.path",
            id="rule-relative-path",
        ),
        pytest.param(
            RULE.format(name="r", method="POST", path="/v1//customers/{customer}"),
            "rules.0.path",
            id="rule-empty-segment",
        ),
        pytest.param(
            RULE.format(name="r", method="POST", path="/v1/customers/{customer}/x-{id}"),
            "rules.0.path",
            id="rule-partial-placeholder",
        ),
        pytest.param(
            RULE.format(name="r", method="FETCH", path="/v1/customers/{customer}"),
            "rules.0.method",
            id="rule-bad-method",
        ),
        pytest.param(
            RULE.format(name="a", method="POST", path="/v1/customers/{customer}/x/{a}")
            + RULE.format(name="b", method="post", path="/V1/customers/{customer}/X/{b}"),
            "rules",
            id="duplicate-rules",
        ),
    ],
)
def test_bad_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    """§3/§4: a bad file is refused with one problem per bad key, naming the key."""
    assert [problem.split(":")[0] for problem in problems_of(tmp_path, text)] == [key]


def test_every_bad_key_is_reported(tmp_path: Path) -> None:
    """§4: check-config names each bad key, not only the first."""
    found = problems_of(
        tmp_path,
        '[server]\nlisten = "nope"\n[policy]\nmdoe = "x"\nenforce_percent = 200\n',
    )
    assert sorted(problem.split(":")[0] for problem in found) == [
        "policy.enforce_percent",
        "policy.mdoe",
        "server.listen",
    ]
    assert all(not problem.split(": ", 1)[1].startswith("Value error") for problem in found)


def test_duplicate_rules_name_both(tmp_path: Path) -> None:
    """§3: two rules that match the same calls are refused, naming both rules."""
    [problem] = problems_of(
        tmp_path,
        RULE.format(name="first", method="POST", path="/v1/customers/{customer}/x")
        + RULE.format(name="second", method="POST", path="/v1/customers/{customer}/x"),
    )
    assert "'first'" in problem and "'second'" in problem


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param('[policy\nmode = "observe"\n', "not valid TOML", id="broken-table"),
        pytest.param("mode = \n", "not valid TOML", id="missing-value"),
        pytest.param('[policy]\nmode = "a"\nmode = "b"\n', "not valid TOML", id="repeated-key"),
    ],
)
def test_invalid_toml(tmp_path: Path, text: str, says: str) -> None:
    """§4: a file that is not TOML is refused, naming the file."""
    [problem] = problems_of(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'gate.toml'}: {says}")


def test_not_utf8(tmp_path: Path) -> None:
    """§4: a file that is not UTF-8 text is refused, naming the file."""
    path = tmp_path / "gate.toml"
    path.write_bytes(b'[policy]\nmode = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: not valid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    """§4: a file that cannot be read is refused, naming the file."""
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [f"{path}: cannot read: No such file or directory"]
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0.0.0.0:8080", ("0.0.0.0", 8080), id="ipv4"),
        pytest.param("localhost:0", ("localhost", 0), id="any-port"),
        pytest.param("[::1]:9090", ("::1", 9090), id="ipv6"),
        pytest.param("host:65535", ("host", 65535), id="top-port"),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    """§3: listen addresses are host:port, [v6]:port for IPv6."""
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("8080", id="port-only"),
        pytest.param(":8080", id="no-host"),
        pytest.param("[]:8080", id="empty-v6"),
        pytest.param("host:", id="no-port"),
        pytest.param("host:-1", id="negative-port"),
        pytest.param("host:65536", id="port-too-big"),
    ],
)
def test_parse_listen_refuses(value: str) -> None:
    """§3: a listen value that is not host:port is refused."""
    with pytest.raises(ValueError, match="must"):
        parse_listen(value)


def test_a_partner_key_that_is_no_tenant_id_is_refused(tmp_path: Path) -> None:
    """§3: a per-partner override under a key no caller could ever have is a config error."""
    [problem] = problems_of(tmp_path, '[policy.partners."{not a tenant}"]\nmode = "off"\n')
    assert problem.startswith("policy.partners:")


def test_malformed_json_in_the_environment_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """§3: GATE_* holding bad JSON is a ConfigError naming the environment, not a traceback."""
    monkeypatch.setenv("GATE_POLICY__PARTNERS", "{bad")
    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.problems[0].startswith("environment:")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("redis://redis:6379/0", id="redis"),
        pytest.param("redis://:pw@10.0.0.5:6379/2", id="password"),
        pytest.param("redis://gate:pw@redis", id="acl-user-no-port-no-db"),
        pytest.param("rediss://redis:6380/0?ssl_ca_certs=/etc/gate/ca.pem", id="tls-with-ca"),
        pytest.param("unix:///run/redis/redis.sock?db=1", id="unix-socket"),
    ],
)
def test_shared_url_accepts_redis_urls(url: str) -> None:
    """§3/§6: acceptance.shared_url takes redis://, rediss:// and unix:// (empty: off)."""
    assert Settings(acceptance={"shared_url": url}).acceptance.shared_url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        pytest.param("http://:pw-1@redis:6379/0", "must be a redis://", id="scheme"),
        pytest.param("redis://:pw-1@:6379/0", "must name a host", id="no-host"),
        pytest.param("redis://:pw-1@redis:70000/0", "check the port", id="bad-port"),
        pytest.param("redis://:pw-1@redis:6379/zero", "database number", id="bad-db"),
        pytest.param("redis://:pw-1@redis/0?password=x", "'password'", id="unknown-option"),
        pytest.param("redis://:pw-1@redis/0?ssl_ca_certs=/x", "'ssl_ca_certs'", id="tls-no-s"),
        pytest.param("unix://:pw-1@host/x", "socket path", id="unix-with-host"),
    ],
)
def test_a_bad_shared_url_is_named_without_its_password(
    tmp_path: Path, url: str, says: str
) -> None:
    """§3/§6: a bad shared_url is refused, naming the key and why; the password never shown."""
    (problem,) = problems_of(tmp_path, f'[acceptance]\nshared_url = "{url}"\n')
    assert problem.startswith("acceptance.shared_url: ") and says in problem
    assert "pw-1" not in problem


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0", id="password"),
        pytest.param("rediss://gate:s3cret@r/1", "rediss://gate:***@r/1", id="user"),
        pytest.param("redis://redis:6379/0", "redis://redis:6379/0", id="none"),
    ],
)
def test_mask_url_hides_the_password(url: str, shown: str) -> None:
    """§6: what a log line or a message shows of a shared_url."""
    assert mask_url(url) == shown


@pytest.mark.parametrize("section", ["server", "admin", "authz"])
@pytest.mark.parametrize(
    ("keys", "says"),
    [
        pytest.param('tls_cert_file = "c.pem"', "(tls_key_file is empty)", id="cert-only"),
        pytest.param('tls_key_file = "k.pem"', "(tls_cert_file is empty)", id="key-only"),
        pytest.param(
            'tls_client_ca_file = "ca.pem"', "tls_client_ca_file (mutual TLS) needs", id="ca-only"
        ),
    ],
)
def test_tls_keys_that_cannot_serve_alone_are_refused(
    tmp_path: Path, section: str, keys: str, says: str
) -> None:
    """§3 TLS: a certificate without its key (or the reverse), or a client CA on a listener
    without TLS, is one problem naming the section and both keys."""
    [problem] = problems_of(tmp_path, f"[{section}]\n{keys}\n")
    assert problem.startswith(f"{section}: "), problem
    assert says in problem
    assert "tls_cert_file" in problem and "tls_key_file" in problem


def test_tls_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """§3: GATE_SERVER__TLS_CERT_FILE and _KEY_FILE set the proxy listener's pair."""
    monkeypatch.setenv("GATE_SERVER__TLS_CERT_FILE", "/etc/gate/tls/tls.crt")
    monkeypatch.setenv("GATE_SERVER__TLS_KEY_FILE", "/etc/gate/tls/tls.key")
    settings = load()
    assert (settings.server.tls_cert_file, settings.server.tls_key_file) == (
        "/etc/gate/tls/tls.crt",
        "/etc/gate/tls/tls.key",
    )


def test_policy_2026_keys_are_read(tmp_path: Path) -> None:
    """§3: agreement types, accepted_since and edit fields are read (any casing), canonical."""
    settings = load(
        write(
            tmp_path,
            '[policy]\nagreement_types = ["microsoftcustomeragreement"]\n'
            "accepted_since = 2023-04-01T00:00:00Z\ndirect_acceptance = false\n"
            'subscription_edits = ["Quantity", "billingcycle"]\n',
        )
    )
    policy = settings.policy
    assert policy.agreement_types == ("MicrosoftCustomerAgreement",)
    assert policy.accepted_since == datetime(2023, 4, 1, tzinfo=UTC)
    assert policy.direct_acceptance is False
    assert policy.edit_fields == ("quantity", "billingCycle")
    assert Settings().policy.edit_fields == ("quantity",)
    assert Settings().policy.accepted_since is None


def test_token_file_problem_never_quotes_the_token(tmp_path: Path) -> None:
    """§1.2: a token file without a tid is refused, naming the key and not its content."""
    secret = tmp_path / "token"
    secret.write_text("not-a-jwt-but-secret-ish", encoding="utf-8")
    problems = problems_of(tmp_path, f'[acceptance]\nlookup_token_file = "{secret}"\n')
    assert problems[0].startswith("acceptance.lookup_token_file:")
    assert "secret-ish" not in " ".join(problems)
