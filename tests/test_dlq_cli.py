"""`settleproof dlq list | show | replay` against a real store file and a real merchant on loopback."""

import json
import subprocess  # nosec: we run our own console script
import sys
from pathlib import Path
from typing import Dict

import pytest
from click.testing import CliRunner, Result

from packages.settleproof.skills.settlement_abci.outbox import OutboxEntry, dumps
from packages.settleproof.skills.settlement_abci.recovery import CommittedState
from packages.settleproof.skills.settlement_abci.store import Replay, Store
from settleproof.cli import main
from settleproof.dlq_cli import parse_time
from settleproof.merchant import MerchantServer, new_secret


T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def letter(n: int, dead_at: int, reason: str = "gone") -> OutboxEntry:
    """A dead letter whose body is a verifiable invoice.paid event."""
    tx_hash = "0x" + f"{n:064x}"
    body = json.dumps({"type": "invoice.paid", "id": f"inv-{n}:{tx_hash}",
                       "data": {"invoice_uuid": f"inv-{n}", "tx_hash": tx_hash}}, separators=(",", ":"))
    return OutboxEntry(f"inv-{n}:{tx_hash}", body, 1, 410, "", dead_at - 50, dead_at, dead_at, reason)


LETTERS = [letter(1, T0), letter(2, T0 + 3600, "max_attempts"), letter(3, T0 + 7200, "rejected")]


@pytest.fixture
def secret(webhook_secret: str) -> str:
    """The secret of conftest's `merchant`, which verifies every request."""
    return webhook_secret


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An agent's store holding three dead letters."""
    store = Store.open(tmp_path)
    values = {"outbox": "[]", "dead_letters": dumps(LETTERS), "processed_keys": "{}"}
    store.commit(CommittedState(3, 120, "", values), period=7)
    store.close()
    return tmp_path


@pytest.fixture
def env(merchant: MerchantServer, secret: str, data_dir: Path) -> Dict[str, str]:
    """The operator's environment."""
    return {
        "SETTLEPROOF_DATA_DIR": str(data_dir),
        "SETTLEPROOF_WEBHOOK_URL": merchant.webhook_url,
        "SETTLEPROOF_WEBHOOK_SECRET": secret,
        "SETTLEPROOF_WEBHOOK_SECRET_NEXT": "",
    }


def run(env: Dict[str, str], *args: str) -> Result:
    """Run `settleproof dlq ...` in-process."""
    return CliRunner().invoke(main, ["dlq", *args], env=env)


def test_list_and_since(env: Dict[str, str]) -> None:
    """One line per dead letter, oldest first; --since filters by the time it was given up on."""
    result = run(env, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["DEAD", "AT", "REASON", "ATTEMPTS", "STATUS", "REPLAYS", "ID"]
    assert [line.split()[-1] for line in lines[1:4]] == [e.id for e in LETTERS]
    assert lines[1].split()[:2] == ["2023-11-14T22:13:20Z", "gone"]
    later = run(env, "list", "--since", "2023-11-14T23:00:00Z")
    assert [line.split()[-1] for line in later.output.splitlines()[1:3]] == [LETTERS[1].id, LETTERS[2].id]
    assert run(env, "list", "--since", str(T0 + 7200)).output.count("inv-") == 1


def test_replay_delivers_and_is_recorded_and_twice_sends_the_same_id(
    env: Dict[str, str], merchant: MerchantServer, data_dir: Path
) -> None:
    """The stored id and body arrive with a fresh valid signature; each replay is kept; the second is a duplicate."""
    target = LETTERS[0]
    for status in (204, 200):  # the merchant answers a known id with 200 and changes nothing
        result = run(env, "replay", target.id)
        assert result.exit_code == 0, result.output
        assert result.output == f"replayed {target.id}: {status} delivered\n"
    (received,) = merchant.events()
    assert received["id"] == received["headers"]["idempotency-key"] == target.id
    assert received["raw_body"] == target.body
    assert merchant.report()["rejected"] == 0 and merchant.report()["duplicates"] == {target.id: 1}
    attempts = merchant.report()["attempts"]
    assert [a["webhook_id"] for a in attempts] == [target.id] * 2
    store = Store.open(data_dir)
    assert [(r.event_id, r.status) for r in store.replays()] == [(target.id, 204), (target.id, 200)]
    assert store.dead_letter(target.id) == target  # a replay never edits the dead letter
    store.close()
    shown = json.loads(run(env, "show", target.id).output)
    assert shown["body"] == json.loads(target.body) and shown["reason"] == "gone"
    assert [r["status"] for r in shown["replays"]] == [204, 200]
    assert "2 (last 200)" in run(env, "list").output


def test_replay_all_and_since(env: Dict[str, str], merchant: MerchantServer) -> None:
    """--since replays the later ones only; --all every one."""
    assert run(env, "replay", "--since", "2023-11-14T23:00:00Z").exit_code == 0
    assert sorted(e["id"] for e in merchant.events()) == sorted([LETTERS[1].id, LETTERS[2].id])
    assert run(env, "replay", "--all").exit_code == 0
    assert sorted(e["id"] for e in merchant.events()) == sorted(e.id for e in LETTERS)
    assert merchant.report()["rejected"] == 0


def test_a_failed_replay_is_recorded_and_reported(
    env: Dict[str, str], merchant: MerchantServer, data_dir: Path
) -> None:
    """The merchant still fails: exit code 1, the outcome kept, the dead letter left as it was."""
    merchant.fail(503, count=1)
    result = run(env, "replay", LETTERS[2].id)
    assert result.exit_code == 1 and "1 of 1 replay(s) not delivered" in result.output
    store = Store.open(data_dir)
    assert store.replays(LETTERS[2].id) == [Replay(LETTERS[2].id, store.replays()[0].replayed_at, 503, "")]
    store.close()


def test_replay_signs_with_both_secrets_during_rotation(env: Dict[str, str], merchant: MerchantServer) -> None:
    """A merchant already on the next secret accepts a replay signed during rotation."""
    following = new_secret()
    merchant.set_secret(following)
    result = run({**env, "SETTLEPROOF_WEBHOOK_SECRET_NEXT": following}, "replay", LETTERS[0].id)
    assert result.exit_code == 0, result.output
    assert merchant.report()["rejected"] == 0 and len(merchant.events()) == 1


@pytest.mark.parametrize(
    "args, change, message",
    [
        (["replay"], {}, "give exactly one of ID, --all or --since TIME"),
        (["replay", "x", "--all"], {}, "give exactly one of ID, --all or --since TIME"),
        (["replay", "nope"], {}, "no dead letter 'nope'"),
        (["show", "nope"], {}, "no dead letter 'nope'"),
        (["replay", "--all"], {"SETTLEPROOF_WEBHOOK_SECRET": ""}, "SETTLEPROOF_WEBHOOK_SECRET: is required"),
        (["replay", "--all"], {"SETTLEPROOF_WEBHOOK_SECRET": "nope"}, "SETTLEPROOF_WEBHOOK_SECRET: must start"),
        (["replay", "--all"], {"SETTLEPROOF_WEBHOOK_URL": "merchant"}, "SETTLEPROOF_WEBHOOK_URL: set it"),
        (["list"], {"SETTLEPROOF_DATA_DIR": "/nonexistent/x"}, "no SettleProof store at /nonexistent/x/"),
        (["list"], {"SETTLEPROOF_DATA_DIR": ""}, "pass --data-dir or set SETTLEPROOF_DATA_DIR"),
        (["list", "--since", "yesterday"], {}, "neither unix seconds nor an ISO 8601 time"),
    ],
)
def test_mistakes_are_one_clear_line(env: Dict[str, str], args: list, change: Dict[str, str], message: str) -> None:
    """Operator errors exit non-zero with a message that says what to fix; nothing is sent."""
    result = run({**env, **change}, *args)
    assert result.exit_code != 0
    assert message in result.output


def test_parse_time() -> None:
    """Unix seconds, or ISO 8601 (UTC unless an offset is given)."""
    assert parse_time(str(T0)) == T0
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time("2023-11-14T22:13:20") == T0
    assert parse_time("2023-11-14T23:13:20+01:00") == T0


def test_console_script_from_another_folder(env: Dict[str, str], tmp_path: Path) -> None:
    """The installed `settleproof` command finds our packages from any working directory."""
    script = Path(sys.executable).with_name("settleproof")
    done = subprocess.run(  # nosec
        [str(script), "dlq", "show", LETTERS[1].id], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reason"] == "max_attempts"
