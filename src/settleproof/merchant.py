"""Merchant simulator: the other side of SettleProof, written as copyable example code.

A merchant needs exactly two things from us (see the README):

* ``GET /invoices?status=open`` lists what it is waiting to be paid for, and
* ``POST /webhook`` receives ``invoice.paid`` events. A real merchant must
  verify every request with the Standard Webhooks library, reject bad
  signatures with 401, and treat ``webhook-id`` as an idempotency key (a retry
  of an event it already handled gets a 2xx and changes nothing).

Everything else here exists for tests: ``GET /events`` and the counters show
what arrived, ``POST /_control`` (or the ``Merchant`` methods) injects
failures, and ``wait_for_events`` lets a test block until deliveries arrive
instead of sleeping.

Run standalone: ``python -m settleproof.merchant --port 8080 --secret whsec_...``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import signal
import socket
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from aiohttp import web
from standardwebhooks import Webhook

from settleproof.loop_thread import LoopThread

#: The invoice fields of the contract, in order; ``GET /invoices?status=open`` returns exactly these.
INVOICE_FIELDS = ("uuid", "token", "receiver", "amount", "payer", "created_block")
#: Paths never affected by injected faults, so tests can always observe and steer.
UNFAULTED_PATHS = ("/_control", "/events")
#: Headers kept with each event for assertions.
HEADERS_OF_INTEREST = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
    "content-type",
    "user-agent",
)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_UINT = re.compile(r"[0-9]+")


def new_secret() -> str:
    """A fresh Standard Webhooks secret (``whsec_`` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _now() -> Tuple[float, str]:
    """(unix seconds, ISO 8601 UTC) of this moment."""
    ts = time.time()
    return ts, datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


class InvoiceError(ValueError):
    """An invoice submitted to ``POST /invoices`` is malformed."""


class MerchantTimeout(TimeoutError):
    """``wait_for_*`` gave up; the message says what did arrive."""


@dataclass
class Fault:
    """One injected misbehaviour: answer ``status`` and/or wait ``delay`` seconds.

    ``remaining=None`` keeps it active until cleared; ``path="*"`` matches all
    fault-able paths.
    """

    path: str = "/webhook"
    status: Optional[int] = None
    retry_after: Optional[str] = None
    delay: float = 0.0
    remaining: Optional[int] = None
    #: With ``sticky``, every later request for a webhook id it once answered gets the same answer.
    sticky: bool = False
    answered: Set[str] = field(default_factory=set)

    def matches(self, path: str, webhook_id: Optional[str] = None) -> bool:
        """Whether a request to ``path`` is affected."""
        if self.path not in ("*", path):
            return False
        return (self.remaining is None or self.remaining > 0) or webhook_id in self.answered

    def consume(self, webhook_id: Optional[str] = None) -> None:
        """Count one affected request (a sticky answer to an id it answered before costs nothing)."""
        if self.sticky and webhook_id in self.answered:
            return
        if self.sticky and webhook_id is not None:
            self.answered.add(webhook_id)
        if self.remaining is not None:
            self.remaining -= 1

    @property
    def spent(self) -> bool:
        """Nothing left to affect."""
        return self.remaining is not None and self.remaining <= 0 and not self.answered


class Merchant:
    """State and rules of one merchant; thread-safe, independent of the web server.

    Handlers run on the server's event loop while tests call the knob and wait
    methods from their own thread, so every access goes through one lock and
    changes are announced on a condition (threads) and to registered asyncio
    events (coroutines on any loop).
    """

    def __init__(self, secret: str, list_paid_as_open: bool = False, accept_unverified: bool = False) -> None:
        """``list_paid_as_open`` simulates a merchant slow to update its list.

        ``accept_unverified`` answers 200 to requests that fail verification and
        keeps them in ``unverified`` instead of rejecting them, so a sender that
        does not sign (the ``make demo-chaos`` baseline) can still be scored.
        They never change an invoice's status.
        """
        self.accept_unverified = accept_unverified
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._async_waiters: List[Tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.set_secret(secret)
        self.list_paid_as_open = list_paid_as_open
        self.reset()

    # ------------------------------------------------------------------ setup
    def set_secret(self, secret: str) -> None:
        """Switch the verifying secret (e.g. to the next one during a rotation)."""
        webhook = Webhook(secret)  # validates the secret before we keep it
        with self._lock:
            self.secret, self._webhook = secret, webhook

    def reset(self) -> None:
        """Forget invoices, events, counters and faults."""
        with self._lock:
            self._invoices: Dict[str, Dict[str, Any]] = {}
            self._raw_invoices: List[Any] = []
            self._events: Dict[str, Dict[str, Any]] = {}
            self.duplicates: Dict[str, int] = {}
            self.rejections: List[Dict[str, Any]] = []
            self.unverified: List[Dict[str, Any]] = []
            self.attempts: List[Dict[str, Any]] = []
            self.arrivals: List[Dict[str, Any]] = []
            self.conflicts: List[Dict[str, Any]] = []
            self._faults: List[Fault] = []
            self._notify()

    # ------------------------------------------------------------------ invoices
    def add_invoice(
        self,
        token: str,
        receiver: str,
        amount: int | str,
        payer: Optional[str] = None,
        created_block: Optional[int] = None,
        uuid: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Register an open invoice and return it in the contract format."""
        invoice = _validated_invoice(
            {
                "uuid": uuid,
                "token": token,
                "receiver": receiver,
                "amount": amount,
                "payer": payer,
                "created_block": created_block,
            }
        )
        with self._lock:
            if invoice["uuid"] in self._invoices:
                raise InvoiceError(f"uuid {invoice['uuid']} already exists")
            self._invoices[invoice["uuid"]] = {**invoice, "status": "open", "tx_hash": None, "paid_at": None}
        return invoice

    def add_raw_invoice(self, entry: Any) -> None:
        """List ``entry`` verbatim among open invoices (to test malformed-entry handling)."""
        with self._lock:
            self._raw_invoices.append(entry)

    def open_invoices(self) -> List[Any]:
        """What ``GET /invoices?status=open`` returns: contract fields only."""
        with self._lock:
            rows = [
                {k: inv[k] for k in INVOICE_FIELDS}
                for inv in self._invoices.values()
                if inv["status"] == "open" or self.list_paid_as_open
            ]
            return rows + list(self._raw_invoices)

    def invoices(self, status: Optional[str] = None) -> List[Dict[str, Any]]:
        """All registered invoices with ``status``, ``tx_hash`` and ``paid_at``."""
        with self._lock:
            return [dict(inv) for inv in self._invoices.values() if status in (None, inv["status"])]

    def invoice(self, uuid: str) -> Dict[str, Any]:
        """One invoice with its status (KeyError if unknown)."""
        with self._lock:
            return dict(self._invoices[uuid])

    # ------------------------------------------------------------------ webhooks
    def handle_webhook(self, body: bytes, headers: Mapping[str, str]) -> Tuple[int, Optional[dict]]:
        """Verify, dedupe and apply one delivery; return (HTTP status, JSON body or None).

        This is the part a real merchant copies: verify the raw body first,
        then use ``webhook-id`` as the idempotency key.
        """
        received_at, received_iso = _now()
        headers = {k.lower(): v for k, v in headers.items()}
        msg_id = headers.get("webhook-id")
        try:
            with self._lock:
                webhook = self._webhook
            webhook.verify(body, headers, json_parse=False)
        except Exception as exc:  # noqa: BLE001  # any failure means "not from SettleProof"
            # The library raises WebhookVerificationError, but a garbled
            # signature header can surface as ValueError/binascii.Error too.
            if self.accept_unverified:
                self._keep_unverified(msg_id, body, received_at, received_iso)
                return 200, {"verified": False}
            self._reject(msg_id, repr(exc), received_iso)
            return 401, {"error": "invalid signature"}
        try:
            event = json.loads(body)
            invoice_uuid = event["data"]["invoice_uuid"]
            tx_hash = event["data"]["tx_hash"]
        except (ValueError, KeyError, TypeError) as exc:
            self._reject(msg_id, f"malformed: {exc!r}", received_iso)
            return 400, {"error": "malformed event"}

        with self._lock:
            if msg_id in self._events:
                self.duplicates[msg_id] = self.duplicates.get(msg_id, 0) + 1
                self._notify()
                return 200, {"duplicate": True}
            invoice = self._invoices.get(invoice_uuid)
            if invoice is not None and invoice["status"] == "paid" and invoice["tx_hash"] != tx_hash:
                # a second, different payment event for one invoice: the service
                # promised this never happens, so keep it visible to tests
                self.conflicts.append(
                    {"webhook_id": msg_id, "invoice_uuid": invoice_uuid, "tx_hash": tx_hash}
                )
            elif invoice is not None:
                invoice.update(status="paid", tx_hash=tx_hash, paid_at=received_iso)
            self._events[msg_id] = {
                "id": msg_id,
                "invoice_uuid": invoice_uuid,
                "tx_hash": tx_hash,
                "known_invoice": invoice is not None,
                "received_at": received_iso,
                "received_at_unix": received_at,
                "headers": {h: headers[h] for h in HEADERS_OF_INTEREST if h in headers},
                "body": event,
                "raw_body": body.decode(),
            }
            self._notify()
        return 204, None

    def _reject(self, msg_id: Optional[str], reason: str, received_iso: str) -> None:
        """Count a refused delivery and keep why."""
        with self._lock:
            self.rejections.append({"webhook_id": msg_id, "reason": reason, "received_at": received_iso})
            self._notify()

    def _keep_unverified(self, msg_id: Optional[str], body: bytes, received_at: float, received_iso: str) -> None:
        """Record an accepted but unverifiable request with what it claims (ids may be in the body only)."""
        try:
            event = json.loads(body)
            claimed = (event.get("id"), event["data"].get("invoice_uuid"), event["data"].get("tx_hash"))
        except (ValueError, KeyError, TypeError, AttributeError):
            claimed = (None, None, None)
        with self._lock:
            self.unverified.append({
                "id": msg_id or claimed[0],
                "invoice_uuid": claimed[1],
                "tx_hash": claimed[2],
                "received_at": received_iso,
                "received_at_unix": received_at,
            })
            self._notify()

    def events(self) -> List[Dict[str, Any]]:
        """Verified, distinct events in arrival order."""
        with self._lock:
            return [dict(e) for e in self._events.values()]

    def report(self) -> Dict[str, Any]:
        """Everything ``GET /events`` shows."""
        with self._lock:
            return {
                "events": self.events(),
                "duplicates": dict(self.duplicates),
                "rejected": len(self.rejections),
                "rejections": list(self.rejections),
                "conflicts": list(self.conflicts),
                "attempts": list(self.attempts),
                "unverified": [dict(u) for u in self.unverified],
            }

    def record_arrival(self, webhook_id: Optional[str]) -> None:
        """Log a ``POST /webhook`` as soon as its body is in, before any injected delay or answer."""
        unix, iso = _now()
        with self._lock:
            self.arrivals.append({"webhook_id": webhook_id, "received_at": iso, "received_at_unix": unix})
            self._notify()

    def record_attempt(self, webhook_id: Optional[str], status: int) -> None:
        """Log every ``POST /webhook`` with the status we answered (faults included)."""
        unix, iso = _now()
        attempt = {"webhook_id": webhook_id, "status": status, "received_at": iso, "received_at_unix": unix}
        with self._lock:
            self.attempts.append(attempt)
            self._notify()

    # ------------------------------------------------------------------ fault knobs
    def fail(
        self,
        status: int,
        count: Optional[int] = None,
        retry_after: Optional[float | str] = None,
        path: str = "/webhook",
        sticky: bool = False,
    ) -> None:
        """Answer ``status`` to the next ``count`` requests on ``path`` (all, until cleared, if None);
        ``sticky`` keeps answering it to every later request for the webhook ids it answered."""
        ra = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.append(Fault(path=path, status=status, retry_after=ra, remaining=count, sticky=sticky))

    def delay(self, seconds: float, count: Optional[int] = None, path: str = "/webhook") -> None:
        """Hold the next ``count`` responses on ``path`` for ``seconds`` (then handle them normally)."""
        with self._lock:
            self._faults.append(Fault(path=path, delay=seconds, remaining=count))

    def clear_faults(self) -> None:
        """Behave normally again."""
        with self._lock:
            self._faults = []

    def take_faults(self, path: str, webhook_id: Optional[str] = None) -> Tuple[float, Optional[Fault]]:
        """Consume the faults matching one request: (total delay, failing fault or None)."""
        with self._lock:
            delay, failing = 0.0, None
            for fault in self._faults:
                if not fault.matches(path, webhook_id):
                    continue
                if fault.status is not None and failing is not None:
                    continue  # one status per request; later ones wait their turn
                fault.consume(webhook_id)
                delay += fault.delay
                if fault.status is not None:
                    failing = fault
            self._faults = [f for f in self._faults if not f.spent]
            return delay, failing

    # ------------------------------------------------------------------ waiting
    def wait_until(self, done: Callable[["Merchant"], bool], timeout: float, what: str) -> None:
        """Block until ``done(merchant)`` holds (called under the lock on every change)."""
        self._wait(lambda: done(self), timeout, what)

    def wait_for_events(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Block until ``count`` distinct verified events arrived; return all events."""
        self._wait(lambda: len(self._events) >= count, timeout, f"{count} events")
        return self.events()

    def wait_for_arrivals(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Block until ``count`` webhook requests arrived, answered or not yet (e.g. held by a delay)."""
        self._wait(lambda: len(self.arrivals) >= count, timeout, f"{count} arrivals")
        with self._lock:
            return list(self.arrivals)

    def wait_for_attempts(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Block until ``count`` webhook requests arrived (any outcome); return them."""
        self._wait(lambda: len(self.attempts) >= count, timeout, f"{count} attempts")
        with self._lock:
            return list(self.attempts)

    async def wait_for_events_async(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """``wait_for_events`` for coroutines (never blocks the running loop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = asyncio.Event()
            with self._lock:
                if len(self._events) >= count:
                    return self.events()
                self._async_waiters.append((loop, event))
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                raise MerchantTimeout(self._timeout_message(f"{count} events", timeout)) from None
            finally:
                with self._lock:
                    if (loop, event) in self._async_waiters:
                        self._async_waiters.remove((loop, event))

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait on the condition for ``done()``; raise ``MerchantTimeout`` with details."""
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise MerchantTimeout(self._timeout_message(what, timeout))

    def _timeout_message(self, what: str, timeout: float) -> str:
        """Say what did arrive, so a failing test explains itself."""
        with self._lock:
            return (
                f"waited {timeout}s for {what}; got {len(self._events)} events "
                f"{list(self._events)}, duplicates {self.duplicates}, "
                f"{len(self.rejections)} rejected {[r['reason'] for r in self.rejections]}, "
                f"{len(self.attempts)} attempts"
            )

    def _notify(self) -> None:
        """Wake waiting threads and coroutines (caller holds the lock)."""
        self._changed.notify_all()
        for loop, event in self._async_waiters:
            loop.call_soon_threadsafe(event.set)


def _validated_invoice(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """Normalize and check one invoice; raise ``InvoiceError`` naming the bad field."""
    inv = {k: raw.get(k) for k in INVOICE_FIELDS}
    inv["uuid"] = str(inv["uuid"]) if inv["uuid"] else str(uuidlib.uuid4())
    for field in ("token", "receiver"):
        if not isinstance(inv[field], str) or not _ADDRESS.fullmatch(inv[field]):
            raise InvoiceError(f"{field}: expected a 0x-prefixed 20-byte hex address")
    payer = inv["payer"]
    if payer is not None and (not isinstance(payer, str) or not _ADDRESS.fullmatch(payer)):
        raise InvoiceError("payer: expected an address or null")
    amount = inv["amount"]
    if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 0:
        inv["amount"] = str(amount)
    elif not isinstance(amount, str) or not _UINT.fullmatch(amount):
        raise InvoiceError("amount: expected base units as a decimal string")
    block = inv["created_block"]
    if block is not None and (not isinstance(block, int) or isinstance(block, bool) or block < 0):
        raise InvoiceError("created_block: expected a non-negative integer or null")
    return inv


# ---------------------------------------------------------------------- HTTP layer
MERCHANT_KEY = web.AppKey("merchant", Merchant)


@web.middleware
async def _faults_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Apply injected delays/statuses, and log every webhook attempt."""
    merchant = request.app[MERCHANT_KEY]
    if request.path in UNFAULTED_PATHS:
        return await handler(request)
    await request.read()  # take the whole body before any delay, like a slow app would
    if request.path == "/webhook":
        merchant.record_arrival(request.headers.get("webhook-id"))
    delay, fault = merchant.take_faults(request.path, request.headers.get("webhook-id"))
    if delay:
        await asyncio.sleep(delay)  # injected latency, not synchronization
    if fault is not None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        response: web.StreamResponse = web.json_response(
            {"error": f"injected fault {fault.status}"}, status=fault.status, headers=headers
        )
    else:
        response = await handler(request)
    if request.path == "/webhook":
        merchant.record_attempt(request.headers.get("webhook-id"), response.status)
    return response


async def _post_webhook(request: web.Request) -> web.Response:
    """Verify and record one ``invoice.paid`` delivery."""
    merchant = request.app[MERCHANT_KEY]
    body = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items()}
    status, payload = merchant.handle_webhook(body, headers)
    if payload is None:
        return web.Response(status=status)
    return web.json_response(payload, status=status)


async def _get_invoices(request: web.Request) -> web.Response:
    """``?status=open``: the contract list; otherwise all invoices with their status."""
    merchant = request.app[MERCHANT_KEY]
    status = request.query.get("status")
    if status == "open":
        return web.json_response(merchant.open_invoices())
    return web.json_response(merchant.invoices(status))


async def _post_invoices(request: web.Request) -> web.Response:
    """Create an invoice from JSON; 201 with the stored invoice, 400/409 on bad input."""
    merchant = request.app[MERCHANT_KEY]
    try:
        raw = await request.json()
        if not isinstance(raw, dict):
            raise InvoiceError("body: expected a JSON object")
        invoice = merchant.add_invoice(**{k: raw.get(k) for k in INVOICE_FIELDS})
    except InvoiceError as exc:
        status = 409 if "already exists" in str(exc) else 400
        return web.json_response({"error": str(exc)}, status=status)
    except ValueError as exc:
        return web.json_response({"error": f"body: {exc}"}, status=400)
    return web.json_response(invoice, status=201)


async def _get_events(request: web.Request) -> web.Response:
    """What arrived, for assertions from outside the process."""
    return web.json_response(request.app[MERCHANT_KEY].report())


async def _post_control(request: web.Request) -> web.Response:
    """Steer the simulator over HTTP: fail / delay / clear / reset / set_secret / list_paid_as_open."""
    merchant = request.app[MERCHANT_KEY]
    try:
        cmd = await request.json()
        action = cmd["action"]
        if action == "fail":
            merchant.fail(
                int(cmd["status"]), cmd.get("count"), cmd.get("retry_after"), cmd.get("path", "/webhook")
            )
        elif action == "delay":
            merchant.delay(float(cmd["seconds"]), cmd.get("count"), cmd.get("path", "/webhook"))
        elif action == "clear":
            merchant.clear_faults()
        elif action == "reset":
            merchant.reset()
        elif action == "set_secret":
            merchant.set_secret(cmd["secret"])
        elif action == "list_paid_as_open":
            merchant.list_paid_as_open = bool(cmd["value"])
        else:
            raise ValueError(f"unknown action {action!r}")
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": repr(exc)}, status=400)
    return web.json_response({"ok": True})


def create_app(merchant: Merchant) -> web.Application:
    """The aiohttp application serving one ``Merchant``."""
    app = web.Application(middlewares=[_faults_middleware])
    app[MERCHANT_KEY] = merchant
    app.router.add_post("/webhook", _post_webhook)
    app.router.add_get("/invoices", _get_invoices)
    app.router.add_post("/invoices", _post_invoices)
    app.router.add_get("/events", _get_events)
    app.router.add_post("/_control", _post_control)
    return app


class MerchantRunner:
    """Serve a ``Merchant`` on the current event loop (async API).

    Binds the socket itself, so ``port=0`` gets a free port without a
    check-then-bind race.
    """

    def __init__(self, merchant: Merchant, host: str = "127.0.0.1", port: int = 0) -> None:
        """Nothing listens until ``start()``."""
        self.merchant = merchant
        self.host, self.port = host, port
        self._runner: Optional[web.AppRunner] = None

    async def start(self) -> str:
        """Start listening; return the base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(create_app(self.merchant), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self.url

    async def stop(self) -> None:
        """Close the listener and in-flight connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> "MerchantRunner":
        """Start on entering ``async with``."""
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        """Always stop."""
        await self.stop()


class MerchantServer:
    """Run a merchant on its own thread and loop, for synchronous tests.

    Attribute access falls through to the ``Merchant`` (``server.fail(...)``,
    ``server.wait_for_events(...)``).
    """

    def __init__(self, secret: Optional[str] = None, host: str = "127.0.0.1", port: int = 0,
                 merchant: Optional[Merchant] = None) -> None:
        """Use ``merchant`` or create one with ``secret`` (a fresh one if None)."""
        self.merchant = merchant or Merchant(secret or new_secret())
        self._runner = MerchantRunner(self.merchant, host, port)
        self._thread = LoopThread("merchant")

    def start(self) -> "MerchantServer":
        """Start the thread; return once the socket listens (startup errors re-raised here)."""
        self._thread.start(self._runner.start, timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._thread.stop(self._runner.stop, timeout=10)

    @property
    def url(self) -> str:
        """Base URL."""
        return self._runner.url

    @property
    def webhook_url(self) -> str:
        """Value for ``SETTLEPROOF_WEBHOOK_URL``."""
        return self.url + "/webhook"

    @property
    def invoices_url(self) -> str:
        """Value for ``SETTLEPROOF_INVOICES_URL``."""
        return self.url + "/invoices?status=open"

    @property
    def list_paid_as_open(self) -> bool:
        """Settable here too (plain attribute writes would not reach the ``Merchant``)."""
        return self.merchant.list_paid_as_open

    @list_paid_as_open.setter
    def list_paid_as_open(self, value: bool) -> None:
        self.merchant.list_paid_as_open = value

    def __getattr__(self, name: str) -> Any:
        """Delegate knobs, waits and inspection to the ``Merchant``."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.merchant, name)

    def __enter__(self) -> "MerchantServer":
        """Start on entering ``with``."""
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        """Always stop."""
        self.stop()


async def _serve_forever(merchant: Merchant, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with MerchantRunner(merchant, host, port) as runner:
        print(f"merchant listening on {runner.url} (webhook {runner.url}/webhook)", flush=True)
        await stop.wait()


def main(argv: Optional[List[str]] = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--secret", default=os.environ.get("SETTLEPROOF_WEBHOOK_SECRET"),
                        help="whsec_... (default: $SETTLEPROOF_WEBHOOK_SECRET)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or SETTLEPROOF_WEBHOOK_SECRET) is required")
    asyncio.run(_serve_forever(Merchant(args.secret), args.host, args.port))


if __name__ == "__main__":
    main()
