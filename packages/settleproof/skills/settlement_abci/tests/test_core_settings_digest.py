"""The vote-shaping settings' digests: every such setting moves its own class, nothing else does."""

from dataclasses import replace

import pytest

from packages.settleproof.skills.settlement_abci import settings_digest
from packages.settleproof.skills.settlement_abci.config import parse_settings
from packages.settleproof.skills.settlement_abci.outbox import OutboxPolicy
from packages.settleproof.skills.settlement_abci.payload_checks import InvalidPayload, parse_settings as parse_payload
from packages.settleproof.skills.settlement_abci.tests.strategies import valid_env


SETTINGS = parse_settings(valid_env())
POLICY = OutboxPolicy()
BASE = settings_digest.settings_digests(SETTINGS, POLICY, 2000)


@pytest.mark.parametrize(
    "changed, cls",
    [
        (dict(settings=replace(SETTINGS, confirmations=SETTINGS.confirmations + 1)), "chain"),
        (dict(settings=replace(SETTINGS, rpc_quorum=SETTINGS.rpc_quorum + 1)), "chain"),
        (dict(settings=replace(SETTINGS, token_addresses=("0x" + "ab" * 20,))), "chain"),
        (dict(settings=replace(SETTINGS, start_block=7)), "chain"),
        (dict(settings=replace(SETTINGS, max_blocks_per_period=3)), "chain"),
        (dict(settings=replace(SETTINGS, webhook_url="http://127.0.0.1:9/other")), "merchant"),
        (dict(settings=replace(SETTINGS, invoices_url="http://127.0.0.1:9/other")), "merchant"),
        (dict(policy=OutboxPolicy(max_attempts=3)), "outbox"),
        (dict(retention=10), "outbox"),
    ],
)
def test_each_vote_shaping_setting_moves_its_class_only(changed, cls) -> None:  # type: ignore[no-untyped-def]
    """One setting changed: exactly its class differs."""
    digests = settings_digest.settings_digests(
        changed.get("settings", SETTINGS), changed.get("policy", POLICY), changed.get("retention", 2000)
    )
    assert settings_digest.differing_classes(digests, BASE) == [cls]


def test_per_agent_values_and_secrets_are_not_hashed() -> None:
    """Providers, data directory and secrets are each operator's own: same digests."""
    own = replace(SETTINGS, rpc_endpoints=("http://127.0.0.9:1",), data_dir="/elsewhere", webhook_secret="other")
    assert settings_digest.settings_digests(own, POLICY, 2000) == BASE


def test_the_payload_form_round_trips_and_anything_else_is_refused() -> None:
    """dumps() passes the door; missing, extra or malformed classes are refused."""
    assert parse_payload(settings_digest.dumps(BASE)) == BASE
    for bad in ("", "{}", '{"chain":"00"}', settings_digest.dumps(BASE)[:-1] + ',"x":"00"}', "[" * 5000, 7):
        with pytest.raises(InvalidPayload):
            parse_payload(bad)
