"""Settings: the TOML file of DESIGN §3, validated once at load.

Each section is a frozen pydantic model whose defaults equal the shipped
``config/gate.toml``; a file names only what it changes, and any key can be
overridden by ``GATE_<SECTION>__<KEY>``. Nothing here is read on the hot
path: ``gate.runtime.compile_settings`` turns these into the tables it reads.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from yarl import URL

__all__ = [
    "AGREEMENT_TYPES",
    "DEFAULT_RULES",
    "EDIT_FIELDS",
    "MCA_TYPE",
    "AcceptanceSettings",
    "AdminSettings",
    "AuthzSettings",
    "ConfigError",
    "IdentitySettings",
    "Listen",
    "LogSettings",
    "PartnerPolicy",
    "PolicySettings",
    "Rule",
    "ServerSettings",
    "Settings",
    "TlsSettings",
    "UpstreamSettings",
    "load",
    "mask_url",
    "parse_listen",
    "read_token_file",
]

Mode = Literal["enforce", "observe", "off"]
Cloud = Literal["public", "usgov", "germany", "china"]
TransactionKind = Literal["new_purchase", "seat_change", "term_change", "confirmation"]
MCA_TYPE = "MicrosoftCustomerAgreement"
AGREEMENT_TYPES = ("MicrosoftCloudAgreement", MCA_TYPE)
EDIT_FIELDS = ("quantity", "termDuration", "billingCycle", "scheduledNextTermInstructions")
"""Subscription fields ``policy.subscription_edits`` may name (DESIGN §1.2)."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PLACEHOLDER = re.compile(r"^\{[a-z_][a-z0-9_]*\}$")


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port from 0 to 65535")
    host = host.removeprefix("[").removesuffix("]")
    if not host:
        raise ValueError("must name a host, e.g. 127.0.0.1:8080")
    return host, int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value


def _optional_listen(value: str) -> str:
    return _listen(value) if value else value


Listen = Annotated[str, AfterValidator(_listen)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Section):
    """A listener's TLS files (``gate.http.tls`` loads them): empty, it speaks plain HTTP.

    Both ``tls_cert_file`` and ``tls_key_file`` set: the listener speaks TLS
    only. ``tls_client_ca_file`` set as well: clients must present a
    certificate issued by that CA (mutual TLS). Whether the files are there
    and usable is checked when a listener opens (and by ``check-config``).
    """

    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            empty = "tls_key_file" if self.tls_cert_file else "tls_cert_file"
            raise ValueError(
                f"tls_cert_file and tls_key_file go together: set both or neither"
                f" ({empty} is empty)"
            )
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError(
                "tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file as well"
            )
        return self


class ServerSettings(TlsSettings):
    listen: Listen = "0.0.0.0:8080"
    workers: int = Field(1, ge=1, le=64)
    shutdown_grace_s: float = Field(30, ge=0)
    max_gated_body_bytes: int = Field(1_048_576, ge=1024)
    """A gated call's body is read whole to be inspected; beyond this: 413."""
    header_timeout_s: float = Field(10, gt=0)
    body_timeout_s: float = Field(30, gt=0)
    keepalive_timeout_s: float = Field(75, gt=0)
    max_header_bytes: int = Field(65_536, ge=1024)
    max_target_bytes: int = Field(8192, ge=256)


class AdminSettings(TlsSettings):
    listen: Listen = "127.0.0.1:9090"
    token: str = ""


class UpstreamSettings(_Section):
    url: str = "https://api.partnercenter.microsoft.com"
    cloud: Cloud = "public"
    connect_timeout_s: float = Field(5, gt=0)
    read_timeout_s: float = Field(120, gt=0)
    max_connections: int = Field(256, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        match = re.fullmatch(r"(https?)://([^/?#@\s]+)(/[^?#\s]*)?", value)
        if match is None:
            raise ValueError("must be an http:// or https:// URL with a host and no query")
        try:
            url = URL(value)
            url.port  # noqa: B018 - yarl checks the port only when asked
        except ValueError as exc:
            raise ValueError(f"is not a usable URL: {exc}") from None
        if not url.raw_host:
            raise ValueError("must name a host")
        return value.rstrip("/")


class PartnerPolicy(_Section):
    mode: Mode


def _listed(value: Any) -> Any:
    """A list given as one string (an environment variable): JSON, or items split at commas."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("is not a JSON list") from None
    return [item.strip() for item in value.split(",") if item.strip()]


def _named(value: Sequence[Any], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Each item as ``known`` spells it (matched case-insensitively), once, in the given order."""
    spelled = {name.lower(): name for name in known}
    named: list[str] = []
    for item in value:
        name = spelled.get(item.strip().lower()) if isinstance(item, str) else None
        if name is None:
            raise ValueError(f"{item!r} is not {what}; known: {', '.join(known)}")
        if name not in named:
            named.append(name)
    return tuple(named)


class PolicySettings(_Section):
    mode: Mode = "enforce"
    enforce_from: datetime = datetime(2018, 11, 7, tzinfo=UTC)
    # NoDecode: a GATE_POLICY__* variable may name the list as TOML users write it, a JSON list,
    # or its items separated by commas (``_listed``), not only as JSON.
    subscription_edits: Annotated[Literal["seat_changes", "all"] | tuple[str, ...], NoDecode] = (
        "seat_changes"
    )
    """``seat_changes`` (= ``["quantity"]``), ``all`` (every PATCH), or a list of EDIT_FIELDS."""
    agreement_types: Annotated[tuple[str, ...], NoDecode] = AGREEMENT_TYPES
    accepted_since: datetime | None = None
    """Agreements dated before it do not count (R4); empty: any date."""
    direct_acceptance: bool = True
    enforce_percent: int = Field(100, ge=0, le=100)
    partners: dict[str, PartnerPolicy] = Field(default_factory=dict)

    @field_validator("enforce_from")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2018-11-07T00:00:00Z")
        return value

    @field_validator("accepted_since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(
                    "must be an RFC 3339 time, e.g. 2023-04-01T00:00:00Z, or empty"
                ) from None
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2023-04-01T00:00:00Z")
        return value

    @field_validator("agreement_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        value = _listed(value)
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"must list one or more of {', '.join(AGREEMENT_TYPES)}")
        return _named(value, AGREEMENT_TYPES, "an agreement type")

    @field_validator("subscription_edits", mode="before")
    @classmethod
    def _edits(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() in ("seat_changes", "all"):
            return value.strip()
        value = _listed(value)
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(
                f"must be 'seat_changes', 'all' or a list of fields ({', '.join(EDIT_FIELDS)})"
            )
        return _named(value, EDIT_FIELDS, "a subscription edit field")

    @property
    def edit_fields(self) -> tuple[str, ...] | None:
        """The fields whose change gates a subscription PATCH; None: every PATCH (``all``)."""
        edits = self.subscription_edits
        if edits == "all":
            return None
        return ("quantity",) if edits == "seat_changes" else tuple(edits)

    @field_validator("partners")
    @classmethod
    def _lowercase_ids(cls, value: dict[str, PartnerPolicy]) -> dict[str, PartnerPolicy]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", key.strip()):
                raise ValueError(f"{key!r} is not a tenant id (e.g. a GUID without braces)")
        lowered = {key.strip().lower(): policy for key, policy in value.items()}
        if len(lowered) != len(value):
            raise ValueError("names one partner twice (tenant ids are case-insensitive)")
        return lowered


class AcceptanceSettings(_Section):
    positive_ttl_s: float = Field(3600, ge=0)
    negative_ttl_s: float = Field(5, ge=0)
    lookup_timeout_s: float = Field(3, gt=0)
    on_lookup_error: Literal["block", "allow"] = "block"
    max_entries: int = Field(1_000_000, ge=1)
    max_concurrent_lookups: int = Field(64, ge=1)
    stale_if_error_s: float = Field(86400, ge=0)
    snapshot_path: str = ""
    retry_after_s: int = Field(5, ge=1)
    """The Retry-After value sent with a fail-closed 503."""
    shared_url: str = ""
    """The shared tier (DESIGN §6): redis://, rediss:// or unix://; empty: each process alone."""
    shared_timeout_s: float = Field(0.1, gt=0, le=10)
    """Longest wait for one Redis command; slower counts as a failure and Redis is skipped."""
    lookup_token_file: str = ""
    """A file holding an App+User token used for the lookups of its own partner (its tid)."""

    @field_validator("lookup_token_file")
    @classmethod
    def _token_file(cls, value: str) -> str:
        if value.strip():
            read_token_file(Path(value.strip()))
        return value.strip()

    @field_validator("shared_url")
    @classmethod
    def _shared_url(cls, value: str) -> str:
        if value:
            _check_shared_url(value.strip())
        return value.strip()


# Options a shared_url may carry in its query (TLS files for rediss://, the db for unix://).
_SHARED_QUERY = {
    "redis": frozenset(),
    "rediss": frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}),
    "unix": frozenset({"db"}),
}


def _check_shared_url(value: str) -> None:
    """A Redis URL redis-py can use; messages name the part at fault, never the URL."""
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        raise ValueError("is not a usable URL (check the port)") from None
    if url.scheme not in _SHARED_QUERY:
        raise ValueError("must be a redis://, rediss:// or unix:// URL (or empty: off)")
    if url.scheme == "unix":
        if not url.path.startswith("/") or url.hostname:
            raise ValueError("must name a socket path, e.g. unix:///run/redis/redis.sock")
    else:
        if not url.hostname:
            raise ValueError("must name a host, e.g. redis://redis:6379/0")
        if port == 0:
            raise ValueError("must name a port from 1 to 65535")
        if url.path not in ("", "/") and not url.path[1:].isdigit():
            raise ValueError("path must be a database number, e.g. /0")
    names = [name for name, _ in parse_qsl(url.query, keep_blank_values=True)]
    unknown = sorted(set(names) - _SHARED_QUERY[url.scheme])
    if unknown:
        raise ValueError(f"query option {unknown[0]!r} is not supported for {url.scheme}://")
    if url.fragment:
        raise ValueError("must not carry a #fragment")


def read_token_file(path: Path) -> tuple[str, str]:
    """(the token, its tid lowercased) from a token file; ValueError never quoting the token."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not text") from None
    token = text.removeprefix("Bearer ").removeprefix("bearer ").strip()
    parts = token.split(".")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (IndexError, ValueError):
        claims = None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    if len(parts) != 3 or not isinstance(tid, str) or not tid.strip():
        raise ValueError(f"{str(path)!r} does not hold a JWT access token with a tid claim")
    return token, tid.strip().lower()


def mask_url(value: str) -> str:
    """A URL fit for a log line or a message: its password, if any, shown as ``***``."""
    try:
        url = urlsplit(value)
        password = url.password
    except ValueError:
        return "(unparsable URL)"
    if not password:
        return value
    user = url.username or ""
    host = url.netloc.rpartition("@")[2]
    return url._replace(netloc=f"{user}:***@{host}").geturl()


class IdentitySettings(_Section):
    partner_header: str = ""

    @field_validator("partner_header")
    @classmethod
    def _token(cls, value: str) -> str:
        if value and not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value):
            raise ValueError("must be an HTTP header name")
        return value


class AuthzSettings(TlsSettings):
    listen: Annotated[str, AfterValidator(_optional_listen)] = ""
    path_prefix: str = ""
    """Envoy's http_service path_prefix, stripped from a check request's path."""
    grpc_listen: Annotated[str, AfterValidator(_optional_listen)] = ""
    """Envoy's gRPC ext_authz service (envoy.service.auth.v3.Authorization/Check); empty: off."""

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (not value.startswith("/") or "?" in value or "#" in value):
            raise ValueError("must be empty or a path starting with /, e.g. /authz")
        return value.rstrip("/")


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Rule(_Section):
    """One classification rule: method + path template -> transaction kind.

    ``when`` narrows a rule by the body: ``always``; ``adds_line_items`` (a
    body that only cancels is not a purchase); ``changes_quantity`` (a seat
    change as DESIGN §1.1 decides it).
    """

    name: str = Field(min_length=1)
    method: str
    path: str
    transaction: TransactionKind
    when: Literal["always", "adds_line_items", "changes_quantity"] = "always"

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in _METHODS:
            raise ValueError(f"must be one of {', '.join(sorted(_METHODS))}")
        return value.upper()

    @field_validator("path")
    @classmethod
    def _template(cls, value: str) -> str:
        segments = value.strip("/").split("/")
        if not value.startswith("/") or "" in segments:
            raise ValueError("must start with / and have no empty segments")
        if segments.count("{customer}") != 1:
            raise ValueError("must contain the segment {customer} exactly once")
        for segment in segments:
            if "{" in segment and not _PLACEHOLDER.match(segment):
                raise ValueError(f"placeholder {segment!r} must fill a whole segment")
        return "/" + "/".join(segments).lower()


def _rule(name: str, method: str, path: str, kind: str, when: str = "always") -> dict[str, str]:
    return {"name": name, "method": method, "path": path, "transaction": kind, "when": when}


_C = "/v1/customers/{customer}"
DEFAULT_RULES: tuple[dict[str, str], ...] = (
    _rule("create-order", "POST", f"{_C}/orders", "new_purchase"),
    _rule("add-order-line-items", "PATCH", f"{_C}/orders/{{order}}", "new_purchase",
          "adds_line_items"),
    _rule("cart-checkout", "POST", f"{_C}/carts/{{cart}}/checkout", "new_purchase"),
    _rule("subscription-upgrade", "POST", f"{_C}/subscriptions/{{subscription}}/upgrades",
          "new_purchase"),
    _rule("subscription-transition", "POST",
          f"{_C}/subscriptions/{{subscription}}/transitions", "new_purchase"),
    _rule("trial-conversion", "POST", f"{_C}/subscriptions/{{subscription}}/conversions",
          "new_purchase"),
    _rule("migrate-new-commerce", "POST", f"{_C}/migrations/newcommerce", "new_purchase"),
    _rule("subscription-edit", "PATCH", f"{_C}/subscriptions/{{subscription}}", "seat_change",
          "changes_quantity"),
    _rule("confirm-acceptance", "POST", f"{_C}/agreements", "confirmation"),
)  # fmt: skip


class Settings(BaseSettings):
    """The whole config; ``load()`` builds it from a file and the environment."""

    model_config = SettingsConfigDict(
        env_prefix="GATE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    admin: AdminSettings = AdminSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    policy: PolicySettings = PolicySettings()
    acceptance: AcceptanceSettings = AcceptanceSettings()
    identity: IdentitySettings = IdentitySettings()
    authz: AuthzSettings = AuthzSettings()
    log: LogSettings = LogSettings()
    rules: tuple[Rule, ...] = tuple(Rule.model_validate(rule) for rule in DEFAULT_RULES)

    @field_validator("rules")
    @classmethod
    def _distinct_rules(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: dict[tuple[str, str], str] = {}
        for rule in rules:
            key = (rule.method, re.sub(r"\{[^}]*\}", "{}", rule.path))
            if key in seen:
                raise ValueError(f"rules {seen[key]!r} and {rule.name!r} match the same calls")
            seen[key] = rule.name
        return rules

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment overrides the file; nothing else is read."""
        return env_settings, init_settings


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(file)"


def load(path: Path | str | None = None) -> Settings:
    """Read a TOML file (or only defaults and env) into validated settings."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    try:
        return Settings(**data)
    except SettingsError as exc:  # a GATE_* variable holding malformed JSON
        raise ConfigError([f"environment: {exc}"]) from exc
    except ValidationError as exc:
        problems = [
            f"{_location(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise ConfigError(problems) from exc
