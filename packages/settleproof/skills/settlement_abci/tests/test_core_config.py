"""Operator settings: defaults, "unset", and one error naming the variable at fault."""

import base64

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci.config import (
    DEFAULT_CONFIRMATIONS,
    DEFAULT_MAX_BLOCKS_PER_PERIOD,
    DEFAULT_RPC_QUORUM,
    DEFAULT_WEBHOOK_MAX_ATTEMPTS,
    ConfigError,
    parse_settings,
    parse_webhook_secret,
    provider_address,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import (
    SECRET,
    SECRET_NEXT,
    TOKENS,
    examples,
    valid_env,
)


REQUIRED = (
    "SETTLEPROOF_RPC_ENDPOINTS",
    "SETTLEPROOF_TOKEN_ADDRESS",
    "SETTLEPROOF_INVOICES_URL",
    "SETTLEPROOF_WEBHOOK_URL",
    "SETTLEPROOF_WEBHOOK_SECRET",
)


def error_for(**overrides) -> ConfigError:
    """The ConfigError a valid environment with these overrides raises."""
    with pytest.raises(ConfigError) as info:
        parse_settings(valid_env(**overrides))
    return info.value


def test_defaults_are_applied():
    """Only the required variables set: everything else takes the documented default."""
    settings = parse_settings(valid_env())
    assert settings.rpc_endpoints == ("http://rpc-a:8545", "https://rpc-b.example/v1?key=1")
    assert settings.rpc_quorum == DEFAULT_RPC_QUORUM == 2
    assert settings.token_addresses == (TOKENS[0],)
    assert settings.invoices_url == "http://merchant:8080/invoices?status=open"
    assert settings.webhook_secret == SECRET
    assert settings.webhook_secret_next is None
    assert settings.webhook_secrets == (SECRET,)
    assert settings.webhook_max_attempts == DEFAULT_WEBHOOK_MAX_ATTEMPTS == 10
    assert settings.confirmations == DEFAULT_CONFIRMATIONS == 12
    assert settings.start_block is None
    assert settings.max_blocks_per_period == DEFAULT_MAX_BLOCKS_PER_PERIOD
    assert settings.max_blocks_per_period > 0
    assert settings.data_dir is None


def test_every_value_set():
    """Each variable reaches its typed field; lists are trimmed and addresses lower-cased."""
    settings = parse_settings(
        valid_env(
            SETTLEPROOF_RPC_ENDPOINTS=" http://a:1 , http://b:2,http://c:3 ,",
            SETTLEPROOF_RPC_QUORUM="3",
            SETTLEPROOF_TOKEN_ADDRESS=f"{TOKENS[0].upper().replace('0X', '0x')}, {TOKENS[1]}",
            SETTLEPROOF_WEBHOOK_SECRET_NEXT=SECRET_NEXT,
            SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS="4",
            SETTLEPROOF_CONFIRMATIONS="0",
            SETTLEPROOF_START_BLOCK="0",
            SETTLEPROOF_MAX_BLOCKS_PER_PERIOD="500",
            SETTLEPROOF_DATA_DIR="/var/lib/settleproof",
        )
    )
    assert settings.rpc_endpoints == ("http://a:1", "http://b:2", "http://c:3")
    assert settings.rpc_quorum == 3
    assert settings.token_addresses == TOKENS
    assert settings.webhook_secrets == (SECRET, SECRET_NEXT)
    assert settings.webhook_max_attempts == 4
    assert settings.confirmations == 0
    assert settings.start_block == 0
    assert settings.max_blocks_per_period == 500
    assert settings.data_dir == "/var/lib/settleproof"


OPTIONAL = (
    "SETTLEPROOF_RPC_QUORUM",
    "SETTLEPROOF_WEBHOOK_SECRET_NEXT",
    "SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS",
    "SETTLEPROOF_CONFIRMATIONS",
    "SETTLEPROOF_START_BLOCK",
    "SETTLEPROOF_MAX_BLOCKS_PER_PERIOD",
    "SETTLEPROOF_DATA_DIR",
)


@pytest.mark.parametrize("variable", OPTIONAL)
@pytest.mark.parametrize("unset", [None, "", "unset", "UNSET", "  unset "])
def test_unset_optional_values_take_the_default(variable, unset):
    """The yaml's placeholder "unset" (any case), empty and absent all mean "not set"."""
    env = valid_env(**{variable: unset})
    if unset is None:
        del env[variable]
    assert parse_settings(env) == parse_settings(valid_env())


@pytest.mark.parametrize("variable", REQUIRED)
@pytest.mark.parametrize("unset", [None, "", "   ", "unset", "Unset"])
def test_missing_required_value_names_the_variable(variable, unset):
    """A required variable that is absent, empty or "unset" is reported as not set."""
    env = valid_env(**{variable: unset})
    if unset is None:
        del env[variable]
    with pytest.raises(ConfigError) as info:
        parse_settings(env)
    assert info.value.variable == variable
    assert str(info.value) == f"{variable}: is required but not set"


BAD_VALUES = [
    ("SETTLEPROOF_RPC_QUORUM", "3", "exceeds the 2 endpoint(s)"),
    ("SETTLEPROOF_RPC_QUORUM", "0", "below the minimum 1"),
    ("SETTLEPROOF_RPC_QUORUM", "two", "not an integer"),
    ("SETTLEPROOF_RPC_ENDPOINTS", "rpc-a:8545", "not an http(s) URL"),
    ("SETTLEPROOF_RPC_ENDPOINTS", "ws://rpc-a:8546", "not an http(s) URL"),
    ("SETTLEPROOF_RPC_ENDPOINTS", "http://a:1,http://a:1", "twice"),
    ("SETTLEPROOF_RPC_ENDPOINTS", ",,", "lists no value"),
    ("SETTLEPROOF_RPC_ENDPOINTS", "http://a:99999", "invalid port"),
    ("SETTLEPROOF_TOKEN_ADDRESS", "0x1234", "not a 0x-prefixed 20-byte address"),
    ("SETTLEPROOF_TOKEN_ADDRESS", TOKENS[0][2:], "not a 0x-prefixed 20-byte address"),
    ("SETTLEPROOF_TOKEN_ADDRESS", f"{TOKENS[0]},{TOKENS[0].upper().replace('0X', '0x')}", "twice"),
    ("SETTLEPROOF_INVOICES_URL", "/invoices", "not an http(s) URL"),
    ("SETTLEPROOF_WEBHOOK_URL", "https://", "not an http(s) URL"),
    ("SETTLEPROOF_WEBHOOK_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "must start with 'whsec_'"),
    ("SETTLEPROOF_WEBHOOK_SECRET", "whsec_not base64!", "not valid base64"),
    ("SETTLEPROOF_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"short").decode(), "fewer than 16 bytes"),
    ("SETTLEPROOF_WEBHOOK_SECRET_NEXT", "whsec_%%%", "not valid base64"),
    ("SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS", "0", "below the minimum 1"),
    ("SETTLEPROOF_WEBHOOK_MAX_ATTEMPTS", "ten", "not an integer"),
    ("SETTLEPROOF_CONFIRMATIONS", "12.5", "not an integer"),
    ("SETTLEPROOF_CONFIRMATIONS", "0x0c", "not an integer"),
    ("SETTLEPROOF_CONFIRMATIONS", "-1", "below the minimum 0"),
    ("SETTLEPROOF_START_BLOCK", "latest", "not an integer"),
    ("SETTLEPROOF_START_BLOCK", "-5", "below the minimum 0"),
    ("SETTLEPROOF_MAX_BLOCKS_PER_PERIOD", "0", "below the minimum 1"),
]


@pytest.mark.parametrize("variable,value,problem", BAD_VALUES, ids=[f"{v}={x}" for v, x, _ in BAD_VALUES])
def test_invalid_value_names_the_variable_and_the_problem(variable, value, problem):
    """One line: `VARIABLE: problem`."""
    error = error_for(**{variable: value})
    assert error.variable == variable
    assert problem in error.problem
    assert str(error).startswith(f"{variable}: ")
    assert "\n" not in str(error)


@examples(50)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=8))
def test_quorum_is_bounded_by_the_endpoint_count(endpoints, quorum):
    """Any quorum 1..endpoints is accepted; above it is refused naming SETTLEPROOF_RPC_QUORUM."""
    env = valid_env(
        SETTLEPROOF_RPC_ENDPOINTS=",".join(f"http://rpc-{n}:8545" for n in range(endpoints)),
        SETTLEPROOF_RPC_QUORUM=str(quorum),
    )
    if quorum <= endpoints:
        assert parse_settings(env).rpc_quorum == quorum
    else:
        with pytest.raises(ConfigError) as info:
            parse_settings(env)
        assert info.value.variable == "SETTLEPROOF_RPC_QUORUM"


@examples(50)
@given(st.binary(min_size=16, max_size=64))
def test_webhook_secret_decodes_to_its_key(key):
    """`whsec_<base64>` gives back the key bytes, padded or not (as standardwebhooks accepts)."""
    encoded = base64.b64encode(key).decode()
    assert parse_webhook_secret("V", "whsec_" + encoded) == key
    assert parse_webhook_secret("V", "whsec_" + encoded.rstrip("=")) == key
    assert parse_settings(valid_env(SETTLEPROOF_WEBHOOK_SECRET="whsec_" + encoded)).webhook_secret == (
        "whsec_" + encoded
    )


# --------------------------------------------------------------------------- one provider, two spellings

SAME_PROVIDER = [
    ("http://127.0.0.1:8545", "http://localhost:8545"),
    ("http://localhost:8545", "http://[::1]:8545"),
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545/"),
    ("http://127.0.0.1:8545", "http://127.1:8545"),
    ("http://0.0.0.0:8545", "http://127.0.0.1:8545"),
    ("http://[::ffff:127.0.0.1]:8545", "http://LOCALHOST:8545/rpc"),
    ("https://rpc.example/v3/key-1", "https://RPC.Example.:443/v3/key-2"),
    ("http://rpc.example", "http://rpc.example:80/"),
    ("https://rpc.example", "http://rpc.example:443"),
    ("https://user:pw@rpc.example/a", "https://rpc.example/b"),
]
DISTINCT_PROVIDERS = [
    ("http://127.0.0.1:8545", "http://127.0.0.2:8545"),  # two addresses: two hosts, also on one port
    ("http://127.0.0.1:8545", "http://127.0.0.1:8546"),
    ("http://rpc.example", "https://rpc.example"),  # ports 80 and 443
    ("https://a.rpc.example", "https://b.rpc.example"),
    ("http://[::1]:8545", "http://[::2]:8545"),
]


@pytest.mark.parametrize("first,second", SAME_PROVIDER)
def test_two_spellings_of_one_provider_are_refused(first, second):
    """They would count twice toward the quorum: start-up stops, naming the variable and both spellings."""
    error = error_for(SETTLEPROOF_RPC_ENDPOINTS=f"{first},http://other.example:1,{second}")
    assert error.variable == "SETTLEPROOF_RPC_ENDPOINTS"
    assert "the same provider" in error.problem and "\n" not in str(error)
    host, port = provider_address(first)
    assert f"({host}:{port})" in error.problem
    for url in (first, second):  # each spelling shown by scheme and host, never its path or credentials
        assert url.split("://")[0] + "://" in error.problem
    assert "key-" not in error.problem and "pw" not in error.problem


@pytest.mark.parametrize("first,second", DISTINCT_PROVIDERS)
def test_distinct_hosts_or_ports_are_distinct_providers(first, second):
    """Another address or another port is another provider."""
    settings = parse_settings(valid_env(SETTLEPROOF_RPC_ENDPOINTS=f"{first},{second}"))
    assert settings.rpc_endpoints == (first, second)


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,2}", fullmatch=True)


@examples(100)
@given(
    hosts,
    st.sampled_from(["http", "https"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    st.sampled_from(["", "/", "/v3/abc", "/rpc/?key=1"]),
    st.booleans(),
)
def test_every_spelling_of_an_address_is_one_provider(host, scheme, port, path, upper):
    """Case, a trailing dot, the default port written out and the path never change the address."""
    assume(host != "localhost" and not host.endswith(".localhost"))  # those are loopback, tested above
    default = {"http": 80, "https": 443}[scheme]
    plain = f"{scheme}://{host}{'' if port is None else f':{port}'}"
    spelled = f"{scheme}://{host.upper() if upper else host}.:{port or default}{path}"
    assert provider_address(plain) == provider_address(spelled) == (host, port or default)
