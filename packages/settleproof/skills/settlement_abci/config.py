"""Operator settings: parsed once at start-up so a bad value stops the agent with one clear line.

The agent's yaml maps each `SETTLEPROOF_*` environment variable to a string
argument of the `params` model; this module turns those strings into typed
settings and names the variable at fault when one is wrong.
"""

import base64
import binascii
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlparse


DEFAULT_RPC_QUORUM = 2
DEFAULT_WEBHOOK_MAX_ATTEMPTS = 10
DEFAULT_CONFIRMATIONS = 12
DEFAULT_MAX_BLOCKS_PER_PERIOD = 2000

# The yaml's env-var syntax needs a non-empty default; these stand for "unset".
UNSET = ("", "unset")
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Names and addresses that all reach this machine's loopback interface.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})  # nosec: compared, never bound
#: What the system resolver also reads as an IPv4 address ("127.1", "0x7f000001", "2130706433").
IPV4_LIKE_RE = re.compile(r"^[0-9a-fx.]+$")
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        """Keep the variable and the problem apart for callers that need them."""
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:  # pylint: disable=too-many-instance-attributes
    """Typed, validated operator settings."""

    rpc_endpoints: Tuple[str, ...]
    rpc_quorum: int
    token_addresses: Tuple[str, ...]
    invoices_url: str
    webhook_url: str
    webhook_secret: str
    webhook_secret_next: Optional[str]
    webhook_max_attempts: int
    confirmations: int
    start_block: Optional[int]
    max_blocks_per_period: int
    data_dir: Optional[str]

    @property
    def webhook_secrets(self) -> Tuple[str, ...]:
        """Secrets that sign each request: the current one, then the next one during rotation."""
        if self.webhook_secret_next:
            return (self.webhook_secret, self.webhook_secret_next)
        return (self.webhook_secret,)


def _required(raw: Mapping[str, Optional[str]], variable: str) -> str:
    value = _optional(raw, variable)
    if value is None:
        raise ConfigError(variable, "is required but not set")
    return value


def _optional(raw: Mapping[str, Optional[str]], variable: str) -> Optional[str]:
    value = (raw.get(variable) or "").strip()
    return None if value.lower() in UNSET else value


def _http_url(variable: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(variable, f"{value!r} is not an http(s) URL")
    try:
        parsed.port  # pylint: disable=pointless-statement
    except ValueError:
        raise ConfigError(variable, f"{value!r} has an invalid port") from None
    return value


def provider_address(url: str) -> Tuple[str, int]:
    """The (host, port) an http(s) URL reaches, the same for every spelling of one address.

    Host case, a trailing dot, the default port of the scheme, IPv6 brackets, IPv4
    spellings the resolver accepts ("127.1") and loopback names ("localhost",
    "127.0.0.1", "[::1]") are normalised; paths, queries and credentials are not part
    of it. Distinct IP addresses stay distinct, also on the same port: 127.0.0.2 is
    another host than 127.0.0.1 (a machine can serve different nodes on each).
    """
    parsed = urlparse(url)
    host = (parsed.hostname or "").rstrip(".")
    if IPV4_LIKE_RE.match(host):
        try:
            host = socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            pass
    try:
        address = ipaddress.ip_address(host)
        mapped = getattr(address, "ipv4_mapped", None)
        host = str(mapped or address)
    except ValueError:
        pass
    if host in LOOPBACK_HOSTS or host.endswith(".localhost"):
        host = "localhost"
    return host, parsed.port or DEFAULT_PORTS[parsed.scheme]


def _shown(url: str) -> str:
    """A URL as an error may show it: scheme, host and port; credentials and any path (API keys) elided."""
    parsed = urlparse(url)
    netloc = parsed.netloc.rpartition("@")[2]
    rest = "" if parsed.path in ("", "/") and not (parsed.query or parsed.fragment) else "/..."
    return f"{parsed.scheme}://{netloc}{parsed.path if not rest else rest}"


def _distinct_providers(variable: str, urls: Sequence[str]) -> None:
    """Two spellings of one provider would count twice toward the quorum: refuse them."""
    seen: Dict[Tuple[str, int], str] = {}
    for url in urls:
        key = provider_address(url)
        if key in seen:
            raise ConfigError(
                variable,
                f"{_shown(seen[key])!r} and {_shown(url)!r} are the same provider ({key[0]}:{key[1]}); "
                "a quorum needs providers on distinct hosts or ports",
            )
        seen[key] = url


def _int(
    raw: Mapping[str, Optional[str]],
    variable: str,
    default: Optional[int],
    minimum: int,
) -> Optional[int]:
    value = _optional(raw, variable)
    if value is None:
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise ConfigError(variable, f"{value!r} is not an integer") from None
    if number < minimum:
        raise ConfigError(variable, f"{number} is below the minimum {minimum}")
    return number


def _address(variable: str, value: str) -> str:
    if not ADDRESS_RE.match(value):
        raise ConfigError(variable, f"{value!r} is not a 0x-prefixed 20-byte address")
    return value.lower()


def parse_webhook_secret(variable: str, value: str) -> bytes:
    """Decode a Standard Webhooks secret (`whsec_<base64>`) into its key bytes."""
    if not value.startswith("whsec_"):
        raise ConfigError(variable, "must start with 'whsec_'")
    encoded = value[len("whsec_") :]
    encoded += "=" * (-len(encoded) % 4)  # unpadded base64, as standardwebhooks accepts
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(variable, "is not valid base64 after 'whsec_'") from None
    if len(key) < 16:
        raise ConfigError(variable, "decodes to fewer than 16 bytes")
    return key


def _listed(variable: str, value: str, item: Callable[[str, str], T]) -> Tuple[T, ...]:
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    if not items:
        raise ConfigError(variable, "lists no value")
    values = tuple(item(variable, part) for part in items)
    if len(set(values)) != len(values):  # after normalising: 0xAB.. and 0xab.. are one address
        raise ConfigError(variable, "lists a value twice")
    return values


def parse_settings(raw: Mapping[str, Optional[str]]) -> Settings:
    """Validate every `SETTLEPROOF_*` value; raise `ConfigError` on the first bad one."""
    endpoints = _listed(
        "SETTLEPROOF_RPC_ENDPOINTS", _required(raw, "SETTLEPROOF_RPC_ENDPOINTS"), _http_url
    )
    _distinct_providers("SETTLEPROOF_RPC_ENDPOINTS", endpoints)
    quorum = _int(raw, "SETTLEPROOF_RPC_QUORUM", DEFAULT_RPC_QUORUM, 1)
    assert quorum is not None  # nosec: a default is given
    if quorum > len(endpoints):
        raise ConfigError(
            "SETTLEPROOF_RPC_QUORUM",
            f"{quorum} exceeds the {len(endpoints)} endpoint(s) in SETTLEPROOF_RPC_ENDPOINTS",
        )
    tokens = _listed(
        "SETTLEPROOF_TOKEN_ADDRESS", _required(raw, "SETTLEPROOF_TOKEN_ADDRESS"), _address
    )
    secret = _required(raw, "SETTLEPROOF_WEBHOOK_SECRET")
    parse_webhook_secret("SETTLEPROOF_WEBHOOK_SECRET", secret)
    secret_next = _optional(raw, "SETTLEPROOF_WEBHOOK_SECRET_NEXT")
    if secret_next is not None:
        parse_webhook_secret("SETTLEPROOF_WEBHOOK_SECRET_NEXT", secret_next)
    numbers: Dict[str, Optional[int]] = {
        "max_attempts": _int(
            raw, "SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS", DEFAULT_WEBHOOK_MAX_ATTEMPTS, 1
        ),
        "confirmations": _int(raw, "SETTLEPROOF_CONFIRMATIONS", DEFAULT_CONFIRMATIONS, 0),
        "start_block": _int(raw, "SETTLEPROOF_START_BLOCK", None, 0),
        "max_blocks": _int(
            raw, "SETTLEPROOF_MAX_BLOCKS_PER_PERIOD", DEFAULT_MAX_BLOCKS_PER_PERIOD, 1
        ),
    }
    return Settings(
        rpc_endpoints=endpoints,
        rpc_quorum=quorum,
        token_addresses=tokens,
        invoices_url=_http_url(
            "SETTLEPROOF_INVOICES_URL", _required(raw, "SETTLEPROOF_INVOICES_URL")
        ),
        webhook_url=_http_url(
            "SETTLEPROOF_WEBHOOK_URL", _required(raw, "SETTLEPROOF_WEBHOOK_URL")
        ),
        webhook_secret=secret,
        webhook_secret_next=secret_next,
        webhook_max_attempts=int(numbers["max_attempts"] or 0),
        confirmations=int(numbers["confirmations"] or 0),
        start_block=numbers["start_block"],
        max_blocks_per_period=int(numbers["max_blocks"] or 0),
        data_dir=_optional(raw, "SETTLEPROOF_DATA_DIR"),
    )
