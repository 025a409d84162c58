"""`settleproof dlq`: the operator's view of one agent's dead-letter queue, and replays.

It reads the agent's durable store (`--data-dir`, default `$SETTLEPROOF_DATA_DIR`)
and POSTs with the merchant settings of the environment (`SETTLEPROOF_WEBHOOK_URL`,
`SETTLEPROOF_WEBHOOK_SECRET`, `SETTLEPROOF_WEBHOOK_SECRET_NEXT`). A replay sends
the stored id and body with a fresh signature, through the same transport as the
agent (redirects not followed), and records the outcome in the store's `replays`
table. The service itself never re-sends a dead letter: a replay is always an
operator's decision, and the merchant deduplicates by `webhook-id`.
"""

import asyncio
import importlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, List, Optional, Tuple

import click

from settleproof.paths import repo_root


SKILL = "packages.settleproof.skills.settlement_abci"
CONNECTION = "packages.settleproof.connections.webhook_client.connection"


def _module(name: str) -> ModuleType:
    """One of our packages' modules: the store, the signer and the transport are the agent's own.

    They live in the checkout's `packages/` (not installed), so the checkout goes first on the path.
    """
    root = str(repo_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    loaded = sys.modules.get("packages")
    if loaded is not None and not str(getattr(loaded, "__file__", "")).startswith(root):
        raise click.ClickException(f"another 'packages' module is already loaded ({loaded.__file__})")
    return importlib.import_module(name)


def _iso(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> int:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither unix seconds nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def _open_store(data_dir: Optional[str]) -> Any:
    """The agent's store, which must exist already (a typo must not create an empty one)."""
    if not data_dir:
        raise click.UsageError("pass --data-dir or set SETTLEPROOF_DATA_DIR")
    store = _module(f"{SKILL}.store")
    path = Path(data_dir) / store.FILE_NAME
    if not path.is_file():
        raise click.ClickException(f"no SettleProof store at {path}")
    try:
        return store.Store(path)
    except store.StoreError as error:
        raise click.ClickException(str(error)) from None


def _merchant() -> Tuple[str, List[str]]:
    """The webhook URL and the signing secrets from the environment, validated like the agent does."""
    config = _module(f"{SKILL}.config")
    url = os.environ.get("SETTLEPROOF_WEBHOOK_URL", "").strip()
    if not url.startswith(("http://", "https://")):
        raise click.ClickException("SETTLEPROOF_WEBHOOK_URL: set it to the merchant's http(s) webhook URL")
    secrets = []
    for variable in ("SETTLEPROOF_WEBHOOK_SECRET", "SETTLEPROOF_WEBHOOK_SECRET_NEXT"):
        value = os.environ.get(variable, "").strip()
        if value and value.lower() != "unset":
            try:
                config.parse_webhook_secret(variable, value)
            except config.ConfigError as error:
                raise click.ClickException(str(error)) from None
            secrets.append(value)
    if not secrets:
        raise click.ClickException("SETTLEPROOF_WEBHOOK_SECRET: is required to sign a replay")
    return url, secrets


data_dir_option = click.option(
    "--data-dir",
    envvar="SETTLEPROOF_DATA_DIR",
    type=click.Path(file_okay=False),
    help="The agent's store folder (default: $SETTLEPROOF_DATA_DIR).",
)


@click.group(name="dlq")
def dlq() -> None:
    """Inspect and replay one agent's dead-letter queue."""


@dlq.command(name="list")
@data_dir_option
@click.option("--since", "since", metavar="TIME", help="Only those given up on at or after TIME.")
def list_(data_dir: Optional[str], since: Optional[str]) -> None:
    """Dead letters, oldest first: when, why, attempts, last status, replays, id."""
    store = _open_store(data_dir)
    letters = store.dead_letters(parse_time(since) if since else None)
    replays = {}
    for replay in store.replays():
        replays.setdefault(replay.event_id, []).append(replay)
    click.echo(f"{'DEAD AT':20}  {'REASON':12}  {'ATTEMPTS':>8}  {'STATUS':>6}  {'REPLAYS':12}  ID")
    for letter in letters:
        done = replays.get(letter.id, [])
        summary = f"{len(done)} (last {done[-1].status})" if done else "-"
        click.echo(
            f"{_iso(letter.last_attempt_at):20}  {letter.dead_reason:12}  {letter.attempts:>8}  "
            f"{letter.last_status:>6}  {summary:12}  {letter.id}"
        )
    click.echo(f"{len(letters)} dead letter(s)", err=True)
    store.close()


@dlq.command(name="show")
@data_dir_option
@click.argument("event_id")
def show(data_dir: Optional[str], event_id: str) -> None:
    """One dead letter as JSON: its record, its exact body and its replays."""
    store = _open_store(data_dir)
    letter = store.dead_letter(event_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {event_id!r}")
    record = {
        "id": letter.id,
        "reason": letter.dead_reason,
        "attempts": letter.attempts,
        "last_status": letter.last_status,
        "last_error": letter.last_error,
        "created_at": _iso(letter.created_at),
        "dead_at": _iso(letter.last_attempt_at),
        "body": json.loads(letter.body),
        "replays": [
            {"at": _iso(r.replayed_at), "status": r.status, "error": r.error, "delivered": r.delivered}
            for r in store.replays(event_id)
        ],
    }
    click.echo(json.dumps(record, indent=2, sort_keys=True))
    store.close()


@dlq.command(name="replay")
@data_dir_option
@click.argument("event_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Replay every dead letter.")
@click.option("--since", "since", metavar="TIME", help="Replay those given up on at or after TIME.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds to wait for each reply.")
def replay(data_dir: Optional[str], event_id: Optional[str], all_: bool, since: Optional[str],
           timeout: float) -> None:
    """Re-deliver ID (or --all, or --since TIME) with the same id and body and a fresh signature."""
    if sum((event_id is not None, all_, since is not None)) != 1:
        raise click.UsageError("give exactly one of ID, --all or --since TIME")
    url, secrets = _merchant()
    store = _open_store(data_dir)
    if event_id is not None:
        letter = store.dead_letter(event_id)
        if letter is None:
            raise click.ClickException(f"no dead letter {event_id!r}")
        letters = [letter]
    else:
        letters = store.dead_letters(parse_time(since) if since else None)
    failed = 0
    for letter in letters:
        result = asyncio.run(_post(url, secrets, letter, timeout))
        store.record_replay(result)
        outcome = "delivered" if result.delivered else f"failed {result.error}".strip()
        click.echo(f"replayed {letter.id}: {result.status} {outcome}")
        failed += not result.delivered
    store.close()
    if failed:
        raise click.ClickException(f"{failed} of {len(letters)} replay(s) not delivered")


async def _post(url: str, secrets: List[str], letter: Any, timeout: float) -> Any:
    """One signed POST of a dead letter's stored id and body; its outcome as a store `Replay`."""
    import aiohttp  # pylint: disable=import-outside-toplevel

    connection = _module(CONNECTION)
    webhook = _module(f"{SKILL}.webhook")
    store = _module(f"{SKILL}.store")
    headers = webhook.signed_headers(webhook.WebhookEvent(letter.id, letter.body), secrets, int(time.time()))
    async with aiohttp.ClientSession() as session:
        reply = await connection.request(session, "POST", url, letter.body.encode(), headers, timeout)
    if reply.status == connection.ERROR_STATUS:
        return store.Replay(letter.id, int(time.time()), 0, reply.body.decode(errors="replace")[:200])
    return store.Replay(letter.id, int(time.time()), reply.status)
