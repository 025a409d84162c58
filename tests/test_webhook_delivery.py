"""Webhook delivery against a real merchant (the simulator, in-process, on loopback).

The keeper's path is driven period by period on a simulated block clock:
`outbox.due` -> sign -> POST with the `webhook_client` connection's `request`
(plain aiohttp, redirects not followed) -> `outbox.attempt_result` ->
`outbox.apply_results`. These are the functions the keeper and every agent
run; only consensus is left out. The merchant verifies every request with
`standardwebhooks` and keeps every attempt, so each test also checks that
nothing was rejected and that ids and bodies never change.
"""

import asyncio
import json
import time
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Dict, List, Optional, Sequence, Tuple, cast
from unittest.mock import MagicMock

import aiohttp
import pytest
from aea.configurations.base import ConnectionConfig
from aea.identity.base import Identity
from aea.mail.base import Envelope
from aea.protocols.base import Message
from aea.protocols.dialogue.base import Dialogue
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from packages.settleproof.connections.webhook_client.connection import (
    ERROR_STATUS,
    WebhookClientConnection,
    request,
)
from packages.settleproof.skills.settlement_abci.outbox import (
    DeliveryResult,
    OutboxEntry,
    OutboxPolicy,
    apply_results,
    attempt_result,
    due,
    enqueue,
)
from packages.settleproof.skills.settlement_abci.webhook_retry import Backoff, header, retry_after_seconds
from packages.settleproof.skills.settlement_abci.webhook import WebhookEvent, signed_headers
from packages.valory.protocols.http.dialogues import HttpDialogue, HttpDialogues
from packages.valory.protocols.http.message import HttpMessage
from settleproof.merchant import MerchantServer, new_secret


T0 = 1_700_000_000  # block time of the first period
BACKOFF = Backoff(base_seconds=5, cap_seconds=60)


def event(n: int) -> WebhookEvent:
    """An `invoice.paid` event as Dedupe fixes it (the merchant only reads data.invoice_uuid and tx_hash)."""
    tx_hash = "0x" + f"{n:064x}"
    body = {"type": "invoice.paid", "id": f"inv-{n}:{tx_hash}", "timestamp": "2023-11-14T22:13:20Z",
            "data": {"invoice_uuid": f"inv-{n}", "tx_hash": tx_hash, "amount": str(1000 + n)}}
    return WebhookEvent(f"inv-{n}:{tx_hash}", json.dumps(body, separators=(",", ":")))


class Keeper:
    """One keeper's delivery, period after period, against `url`."""

    def __init__(self, url: str, secrets: Sequence[str], policy: OutboxPolicy = OutboxPolicy(),
                 timeout: float = 2.0, concurrency: int = 16) -> None:
        """Nothing waits yet."""
        self.url, self.secrets, self.policy = url, list(secrets), policy
        self.timeout, self.concurrency = timeout, concurrency
        self.outbox: List[OutboxEntry] = []
        self.dead: List[OutboxEntry] = []
        self.delivered: List[str] = []
        self.reports: List[List[DeliveryResult]] = []

    def enqueue(self, events: Sequence[WebhookEvent], now: int = T0) -> None:
        """Events agreed in Dedupe at block time `now`."""
        self.outbox, _ = enqueue(self.outbox, [], events, now)

    def period(self, now: int) -> List[DeliveryResult]:
        """One keeper round at block time `now`, then the checkpoint applying its report."""
        report = asyncio.run(self._deliver(due(self.outbox, now), now))
        self.reports.append(report)
        self.outbox, dead, delivered = apply_results(self.outbox, report, self.policy)
        self.dead += dead
        self.delivered += delivered
        return report

    def next_due(self) -> int:
        """The block time at which something is due next."""
        return min(e.next_attempt_at for e in self.outbox)

    def all_due(self) -> int:
        """The block time at which everything waiting is due."""
        return max(e.next_attempt_at for e in self.outbox)

    async def _deliver(self, entries: Sequence[OutboxEntry], now: int) -> List[DeliveryResult]:
        limit = asyncio.Semaphore(self.concurrency)
        async with aiohttp.ClientSession() as session:

            async def post(entry: OutboxEntry) -> DeliveryResult:
                headers = signed_headers(WebhookEvent(entry.id, entry.body), self.secrets, int(time.time()))
                async with limit:
                    reply = await request(session, "POST", self.url, entry.body.encode(), headers, self.timeout)
                status, error = reply.status, ""
                if status == ERROR_STATUS:
                    status, error = 0, reply.body.decode()
                retry_after = retry_after_seconds(header(reply.headers, "Retry-After"), time.time())
                return attempt_result(entry, status, error, retry_after, now, BACKOFF)

            return list(await asyncio.gather(*(post(entry) for entry in entries)))


@pytest.fixture
def secret(webhook_secret: str) -> str:
    """The secret of conftest's `merchant`, which verifies every request."""
    return webhook_secret


def assert_all_verified(merchant: MerchantServer, events: Sequence[WebhookEvent]) -> None:
    """No request was rejected; every delivered event carries its fixed id and body."""
    report = merchant.report()
    assert report["rejected"] == 0, report["rejections"]
    bodies = {e.id: e.body for e in events}
    for received in merchant.events():
        assert received["raw_body"] == bodies[received["id"]]
        assert received["headers"]["idempotency-key"] == received["id"]


def test_merchant_down_then_back_gets_every_event_with_the_same_ids(merchant: MerchantServer, secret: str) -> None:
    """Connection refused for three periods; once the merchant listens again, all events arrive, ids unchanged."""
    events = [event(n) for n in range(5)]
    keeper = Keeper(merchant.webhook_url, [secret])
    keeper.enqueue(events)
    merchant.stop()  # nothing listens on the port: connection refused
    now = T0
    for _ in range(3):
        report = keeper.period(now)
        assert {r.status for r in report} == {0} and len(report) == 5
        assert all("Cannot connect" in r.error or "refused" in r.error.lower() for r in report), report[0].error
        now = keeper.all_due()
    assert [e.attempts for e in keeper.outbox] == [3] * 5 and keeper.dead == []
    merchant.start()  # same port
    assert len(keeper.period(now)) == 5
    assert sorted(keeper.delivered) == sorted(e.id for e in events)
    assert sorted(e["id"] for e in merchant.events()) == sorted(e.id for e in events)
    assert_all_verified(merchant, events)


def test_slow_merchant_beyond_the_timeout_is_retried_with_the_same_id(merchant: MerchantServer, secret: str) -> None:
    """The first reply takes longer than the timeout: reported as a timeout, retried, the merchant sees one id."""
    merchant.delay(1.0, count=1)
    keeper = Keeper(merchant.webhook_url, [secret], timeout=0.3)
    keeper.enqueue([event(1)])
    (first,) = keeper.period(T0)
    assert first.status == 0 and first.error == "timed out after 0.3s"
    assert T0 <= first.retry_at <= T0 + BACKOFF.base_seconds
    (second,) = keeper.period(keeper.next_due())
    assert second.status == 204
    merchant.wait_for_attempts(2)  # the slow first one is handled too, eventually
    assert [a["webhook_id"] for a in merchant.report()["attempts"]] == [event(1).id] * 2
    assert [e["id"] for e in merchant.events()] == [event(1).id]
    assert merchant.report()["duplicates"] == {event(1).id: 1}
    assert_all_verified(merchant, [event(1)])


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_503_with_retry_after_is_honoured(merchant: MerchantServer, secret: str, form: str) -> None:
    """Nothing is sent before the merchant's Retry-After; the next attempt after it is delivered."""
    wait = 120
    value = str(wait) if form == "seconds" else format_datetime(
        datetime.fromtimestamp(time.time() + wait, tz=timezone.utc), usegmt=True
    )
    merchant.fail(503, count=1, retry_after=value)
    keeper = Keeper(merchant.webhook_url, [secret])
    keeper.enqueue([event(1)])
    (first,) = keeper.period(T0)
    assert first.status == 503
    assert first.retry_at >= T0 + wait - 2  # an HTTP date has whole-second precision
    assert keeper.period(T0 + wait // 2) == []  # not due yet: no request at all
    assert len(merchant.report()["attempts"]) == 1
    (second,) = keeper.period(keeper.next_due())
    assert second.status == 204 and keeper.delivered == [event(1).id]
    assert_all_verified(merchant, [event(1)])


def test_410_is_dead_lettered_at_the_attempt_that_confirms_it(merchant: MerchantServer, secret: str) -> None:
    """A 410 makes the event due again at once (one keeper's word is not enough); the next period's
    410 puts it in the dead-letter queue, and the merchant is never asked again."""
    merchant.fail(410)
    keeper = Keeper(merchant.webhook_url, [secret])
    keeper.enqueue([event(1)])
    keeper.period(T0)
    assert keeper.dead == [] and keeper.next_due() == T0
    keeper.period(T0 + 10)
    assert keeper.outbox == []
    assert [(d.id, d.attempts, d.last_status, d.dead_reason) for d in keeper.dead] == [(event(1).id, 2, 410, "gone")]
    keeper.period(T0 + 20)
    assert len(merchant.report()["attempts"]) == 2


def test_400_is_dead_lettered_after_the_configured_attempts(merchant: MerchantServer, secret: str) -> None:
    """client_error_attempts=2: two attempts (same id and body), then the dead-letter queue."""
    merchant.fail(400)
    keeper = Keeper(merchant.webhook_url, [secret], OutboxPolicy(max_attempts=10, client_error_attempts=2))
    keeper.enqueue([event(1)])
    keeper.period(T0)
    assert keeper.dead == [] and keeper.outbox[0].attempts == 1
    keeper.period(keeper.next_due())
    assert [(d.attempts, d.dead_reason) for d in keeper.dead] == [(2, "rejected")]
    assert [a["webhook_id"] for a in merchant.report()["attempts"]] == [event(1).id] * 2


def test_every_request_verifies_during_secret_rotation(merchant: MerchantServer, secret: str) -> None:
    """Signed with the current and the next secret: a merchant that already switched accepts it too."""
    following = new_secret()
    merchant.set_secret(following)
    keeper = Keeper(merchant.webhook_url, [secret, following])
    events = [event(n) for n in range(3)]
    keeper.enqueue(events)
    keeper.period(T0)
    assert sorted(keeper.delivered) == sorted(e.id for e in events)
    assert_all_verified(merchant, events)


async def _serve_redirect(target: str) -> Tuple[web.AppRunner, str]:
    """A server answering every POST with 307 to `target`."""
    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": target})

    app = web.Application()
    app.router.add_post("/webhook", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/webhook"


def test_redirects_are_not_followed(merchant: MerchantServer, secret: str) -> None:
    """A 307 to the (real) merchant is reported as 307 and retried later; the merchant never sees it."""

    async def run() -> Tuple[int, str]:
        runner, url = await _serve_redirect(merchant.webhook_url)
        try:
            async with aiohttp.ClientSession() as session:
                headers = signed_headers(event(1), [secret], int(time.time()))
                reply = await request(session, "POST", url, event(1).body.encode(), headers, 2.0)
                return reply.status, reply.headers
        finally:
            await runner.cleanup()

    status, headers = asyncio.run(run())
    assert status == 307 and header(headers, "Location") == merchant.webhook_url
    assert merchant.report()["attempts"] == []


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from([200, 204, 400, 429, 500, 503, 410]), min_size=1, max_size=4))
def test_body_and_id_are_identical_across_attempts(statuses: List[int]) -> None:
    """Whatever the merchant answers, every attempt of an event sends the same id, key and bytes."""
    secret = new_secret()
    with MerchantServer(secret) as merchant:
        for status in statuses:
            merchant.fail(status, count=1)
        keeper = Keeper(merchant.webhook_url, [secret], OutboxPolicy(max_attempts=10, client_error_attempts=10))
        keeper.enqueue([event(7)])
        now = T0
        for _ in statuses:
            if not keeper.outbox:
                break
            keeper.period(now)
            now = keeper.next_due() if keeper.outbox else now
        attempts = merchant.report()["attempts"]
        assert attempts and {a["webhook_id"] for a in attempts} == {event(7).id}
        assert_all_verified(merchant, [event(7)])
        assert all(r.id == event(7).id for report in keeper.reports for r in report)


def test_merchant_reports_a_held_request_on_arrival(merchant: MerchantServer, secret: str) -> None:
    """`wait_for_arrivals` returns while a delayed request is still unanswered (the keeper-killed test relies on it)."""
    merchant.delay(0.5, count=1)

    async def run() -> Tuple[int, int, int]:
        async with aiohttp.ClientSession() as session:
            headers = signed_headers(event(1), [secret], int(time.time()))
            post = asyncio.ensure_future(
                request(session, "POST", merchant.webhook_url, event(1).body.encode(), headers, 5.0)
            )
            arrivals = await asyncio.get_running_loop().run_in_executor(None, merchant.wait_for_arrivals, 1)
            answered_before = len(merchant.report()["attempts"])
            reply = await post
            return len(arrivals), answered_before, reply.status

    assert asyncio.run(run()) == (1, 0, 204)
    assert merchant.arrivals[0]["webhook_id"] == event(1).id


# --------------------------------------------------------------------------- the connection itself


def _connection(timeout: float) -> WebhookClientConnection:
    """The agent's connection, as the framework builds it from connection.yaml."""
    configuration = ConnectionConfig(
        timeout=timeout, max_connections=4, connection_id=WebhookClientConnection.connection_id
    )
    identity = Identity("agent", address="agent-address", public_key="agent-key")
    return WebhookClientConnection(configuration=configuration, data_dir=MagicMock(), identity=identity)


async def _exchange(
    connection: WebhookClientConnection, url: str, body: bytes, headers: Dict[str, str]
) -> HttpMessage:
    """One request from a skill's dialogue through the connection, and its reply."""

    def client(_message: Message, _receiver: str) -> Dialogue.Role:
        return HttpDialogue.Role.CLIENT

    skill = "settleproof/settlement_abci:0.1.0"
    dialogues = HttpDialogues(skill, role_from_first_message=client)
    message, _ = dialogues.create(
        counterparty=str(connection.connection_id), performative=HttpMessage.Performative.REQUEST,
        method="POST", url=url, headers="".join(f"{k}: {v}\r\n" for k, v in headers.items()),
        version="", body=body,
    )
    await connection.send(Envelope(to=message.to, sender=message.sender, message=message))
    reply = await asyncio.wait_for(connection.receive(), 10)
    assert reply is not None and reply.to == skill
    assert dialogues.update(reply.message) is not None  # a valid reply in the skill's dialogue
    return cast(HttpMessage, reply.message)


def test_connection_round_trip_refusal_and_timeout(merchant: MerchantServer, secret: str) -> None:
    """Through the agent's connection: a verified 204, then a refused connection and a timeout as status 600."""

    async def run() -> Tuple[HttpMessage, HttpMessage, HttpMessage]:
        connection = _connection(timeout=0.3)
        await connection.connect()
        try:
            body = event(1).body.encode()
            headers = signed_headers(event(1), [secret], int(time.time()))
            delivered = await _exchange(connection, merchant.webhook_url, body, headers)
            merchant.delay(1.0, count=1)
            slow = await _exchange(connection, merchant.webhook_url, body, headers)
            refused = await _exchange(connection, "http://127.0.0.1:9/webhook", body, headers)
            return delivered, slow, refused
        finally:
            await connection.disconnect()

    delivered, slow, refused = asyncio.run(run())
    assert delivered.status_code == 204
    assert (slow.status_code, slow.body) == (ERROR_STATUS, b"timed out after 0.3s")
    assert refused.status_code == ERROR_STATUS and b"Cannot connect" in refused.body
    assert [e["id"] for e in merchant.events()] == [event(1).id]
    assert_all_verified(merchant, [event(1)])


def test_no_retry_after_leaves_the_schedule_to_the_backoff() -> None:
    """A reply without Retry-After leaves the schedule to the backoff alone."""
    assert retry_after_seconds(header("", "Retry-After"), time.time()) is None
    entry = OutboxEntry("a", "{}", created_at=T0)
    result: Optional[DeliveryResult] = attempt_result(entry, 503, "", None, T0, BACKOFF)
    assert result is not None and T0 <= result.retry_at <= T0 + BACKOFF.base_seconds
