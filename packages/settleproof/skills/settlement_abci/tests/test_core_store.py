"""The durable store against a real SQLite file: WAL, versioned schema, atomic checkpoints, no truncation."""

import sqlite3
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packages.settleproof.skills.settlement_abci import store as store_module
from packages.settleproof.skills.settlement_abci.outbox import OutboxEntry, dumps, dumps_processed
from packages.settleproof.skills.settlement_abci.recovery import CommittedState
from packages.settleproof.skills.settlement_abci.store import (
    FILE_NAME,
    SCHEMA_VERSION,
    Checkpoint,
    Replay,
    Store,
    StoreError,
    check_existing,
)
from packages.settleproof.skills.settlement_abci.tests.strategies import examples


def entry(name: str, **fields: object) -> OutboxEntry:
    """An outbox entry named `name`."""
    return OutboxEntry(f"{name}:0x{name}", f'{{"id":"{name}"}}', **fields)  # type: ignore[arg-type]


def dead(name: str, at: int, reason: str = "gone") -> OutboxEntry:
    """A dead letter given up on at block time `at`."""
    return entry(name, attempts=1, last_status=410, last_attempt_at=at, created_at=at - 5, dead_reason=reason)


def commit_checkpoint(  # pylint: disable=too-many-arguments
    store: Store,
    checkpoint: Optional[int],
    period: int,
    outbox: Sequence[OutboxEntry],
    dead_letters: Sequence[OutboxEntry],
    block_hash: str = "",
    processed: Optional[dict] = None,
) -> CommittedState:
    """Commit a state holding this outbox and these dead letters (commit number 0)."""
    state = CommittedState(0, checkpoint, block_hash, {
        "outbox": dumps(outbox), "dead_letters": dumps(dead_letters),
        "processed_keys": dumps_processed(processed or {}),
    })
    store.commit(state, period)
    return state


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a temporary data dir."""
    opened = Store.open(tmp_path / "data")
    yield opened
    opened.close()


def test_new_store_is_wal_versioned_and_empty(tmp_path: Path) -> None:
    """The folder is created; the file is in WAL mode at the current schema version with nothing stored."""
    opened = Store.open(tmp_path / "nested" / "data")
    try:
        assert opened.path == tmp_path / "nested" / "data" / FILE_NAME and opened.path.is_file()
        assert opened.schema_version() == SCHEMA_VERSION == 3
        raw = sqlite3.connect(opened.path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        raw.close()
        assert (opened.checkpoint(), opened.outbox(), opened.dead_letters(), opened.replays()) == (None, [], [], [])
        assert opened.committed_state() is None and opened.processed_count() == 0
    finally:
        opened.close()


def test_checkpoint_replaces_outbox_and_only_adds_dead_letters(store: Store) -> None:
    """Each commit holds one period; dead letters of earlier commits stay even if a later one omits them."""
    waiting = entry("a", attempts=2, last_status=503, last_error="busy", created_at=10, next_attempt_at=40,
                    last_attempt_at=20)
    commit_checkpoint(store, 110, 3, [waiting, entry("b")], [dead("x", 100)])
    assert store.checkpoint() == Checkpoint(110, None, 3)
    assert store.outbox() == [waiting, entry("b")]
    commit_checkpoint(store, 120, 4, [entry("c")], [dead("y", 90, "rejected")], block_hash="0xab")
    assert store.checkpoint() == Checkpoint(120, "0xab", 4)
    assert store.outbox() == [entry("c")]
    assert store.dead_letters() == [dead("y", 90, "rejected"), dead("x", 100)]
    assert store.dead_letters(since=95) == [dead("x", 100)]
    assert store.dead_letter("x:0xx") == dead("x", 100) and store.dead_letter("nope") is None
    commit_checkpoint(store, None, 5, [], [dead("x", 999, "max_age")])  # same id again: the first is kept
    assert store.dead_letter("x:0xx") == dead("x", 100)
    assert store.checkpoint() == Checkpoint(None, None, 5)


def test_a_failed_commit_leaves_the_previous_checkpoint_whole(store: Store) -> None:
    """The outbox table refuses a dead letter's reason: the whole transaction rolls back."""
    commit_checkpoint(store, 110, 3, [entry("a")], [dead("x", 100)])
    with pytest.raises(sqlite3.IntegrityError):
        commit_checkpoint(store, 120, 4, [entry("b"), dead("bad", 1)], [dead("y", 101)])
    assert store.checkpoint() == Checkpoint(110, None, 3)
    assert store.outbox() == [entry("a")]
    assert [d.id for d in store.dead_letters()] == ["x:0xx"]


def test_replays_are_recorded_in_order(store: Store) -> None:
    """Every replay is kept, per event and overall."""
    commit_checkpoint(store, 1, 1, [], [dead("x", 100), dead("y", 101)])
    store.record_replay(Replay("x:0xx", 1_700_000_000, 0, "refused"))
    store.record_replay(Replay("y:0xy", 1_700_000_001, 204))
    store.record_replay(Replay("x:0xx", 1_700_000_002, 204))
    assert [r.status for r in store.replays("x:0xx")] == [0, 204]
    assert [r.event_id for r in store.replays()] == ["x:0xx", "y:0xy", "x:0xx"]
    assert store.replays("x:0xx")[-1].delivered and not store.replays("x:0xx")[0].delivered
    with pytest.raises(sqlite3.IntegrityError):  # only dead letters can be replayed
        store.record_replay(Replay("unknown", 1, 200))


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    """What one process committed, the next one reads (and no migration runs twice)."""
    first = Store.open(tmp_path)
    commit_checkpoint(first, 7, 2, [entry("a")], [dead("x", 5)])
    first.close()
    second = Store.open(tmp_path)
    assert (second.checkpoint(), second.outbox(), second.dead_letters()) == (
        Checkpoint(7, None, 2), [entry("a")], [dead("x", 5)]
    )
    assert second.schema_version() == SCHEMA_VERSION
    second.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer agent is not guessed at: the error names the file and what to do."""
    Store.open(tmp_path).close()
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=rf"{FILE_NAME}: schema version {SCHEMA_VERSION + 1} is newer .* move the file aside"):
        Store.open(tmp_path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    """Garbage in the store's place gives a clear error, and the file is left as it was."""
    path = tmp_path / FILE_NAME
    path.write_bytes(b"definitely not a database" * 100)
    with pytest.raises(StoreError, match="not a usable SettleProof store"):
        Store.open(tmp_path)
    assert path.read_bytes().startswith(b"definitely not")


def test_migrations_run_in_order_from_any_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later version appended to MIGRATIONS runs once on an existing file of the current version."""
    Store.open(tmp_path).close()
    extra = ("CREATE TABLE processed_keys (key TEXT PRIMARY KEY)",)  # a made-up next version
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, extra))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", store_module.SCHEMA_VERSION + 1)
    upgraded = Store.open(tmp_path)
    assert upgraded.schema_version() == store_module.SCHEMA_VERSION
    upgraded.close()
    raw = sqlite3.connect(tmp_path / FILE_NAME)
    assert raw.execute("SELECT COUNT(*) FROM processed_keys").fetchone() == (0,)
    raw.close()


@examples(30)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.integers(0, 10**6), st.sampled_from(["gone", "rejected"])),
        max_size=12,
    )
)
def test_dead_letters_are_never_lost(tmp_path_factory: pytest.TempPathFactory, commits) -> None:  # type: ignore[no-untyped-def]
    """Whatever is committed in whatever order, every dead-letter id ever committed is still there."""
    opened = Store.open(tmp_path_factory.mktemp("store"))
    seen = set()
    for period, (name, at, reason) in enumerate(commits):
        commit_checkpoint(opened, period, period, [], [dead(name, at, reason)])
        seen.add(f"{name}:0x{name}")
        assert {d.id for d in opened.dead_letters()} == seen
    opened.close()


def test_a_version_1_file_is_migrated_and_keeps_its_dead_letters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store written before processed keys existed opens at version 2; its data stays, and as it
    holds no committed state the agent resumes from the others' (or starts afresh)."""
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    old = Store.open(tmp_path)
    old._db.execute(  # pylint: disable=protected-access
        "INSERT INTO checkpoint (id, block, block_hash, period) VALUES (1, 7, NULL, 2)"
    )
    old.close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    upgraded = Store.open(tmp_path)
    assert upgraded.schema_version() == 2
    assert upgraded.checkpoint() == Checkpoint(7, None, 2, 0)
    assert upgraded.committed_state() is None
    upgraded.close()


def test_a_version_2_file_keeps_its_outbox_and_dead_letters_unacknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store from before acknowledgements were counted: its rows read back with none counted."""
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    old = Store.open(tmp_path)
    columns = "id, body, attempts, last_status, last_error, created_at, next_attempt_at, last_attempt_at, dead_reason"
    old._db.execute(f"INSERT INTO outbox ({columns}) VALUES ('a:0xa', '{{}}', 1, 503, '', 5, 9, 6, '')")  # pylint: disable=protected-access
    old._db.execute(  # pylint: disable=protected-access
        f"INSERT INTO dead_letters ({columns}, period) VALUES ('x:0xx', '{{}}', 10, 503, '', 5, 9, 100, 'max_attempts', 3)"
    )
    old.close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 3)
    upgraded = Store.open(tmp_path)
    assert upgraded.outbox() == [OutboxEntry("a:0xa", "{}", 1, 503, "", 5, 9, 6)]
    assert upgraded.dead_letters() == [OutboxEntry("x:0xx", "{}", 10, 503, "", 5, 9, 100, "max_attempts")]
    upgraded.close()


def test_committed_state_and_every_processed_key_are_kept(store: Store) -> None:
    """The committed state reads back exactly (digest and all); processed keys only accumulate, even
    those a later state let go of."""
    first = commit_checkpoint(store, 110, 3, [entry("a")], [], "0xaa", {"a:0xa": 105, "b:0xb": 106})
    assert store.committed_state() == first
    second = commit_checkpoint(store, 120, 4, [], [], "0xbb", {"c:0xc": 118})
    assert store.committed_state() == second and store.committed_state().digest == second.digest
    assert store.processed_count() == 3
    assert store.checkpoint() == Checkpoint(120, "0xbb", 4, 0)


def test_a_tampered_committed_state_is_refused(tmp_path: Path) -> None:
    """A stored state whose digest no longer matches is refused with the file's name."""
    opened = Store.open(tmp_path)
    commit_checkpoint(opened, 110, 3, [], [], "0xaa")
    opened._db.execute("UPDATE checkpoint SET state = replace(state, '110', '999')")  # pylint: disable=protected-access
    with pytest.raises(StoreError, match=rf"{FILE_NAME}: committed state does not match its digest"):
        opened.committed_state()
    opened.close()
    with pytest.raises(StoreError, match="move it aside"):
        check_existing(tmp_path)


def test_check_existing_creates_nothing_and_refuses_damage(tmp_path: Path) -> None:
    """No file: nothing happens (and nothing is created). An empty, truncated or garbage file: refused."""
    check_existing(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    good = Store.open(tmp_path / "good")
    commit_checkpoint(good, 110, 3, [entry("a")], [dead("x", 5)], "0xaa", {"a:0xa": 105})
    good.close()
    check_existing(tmp_path / "good")
    data = (tmp_path / "good" / FILE_NAME).read_bytes()
    for name, content in (("empty", b""), ("truncated", data[: len(data) // 2]), ("garbage", b"junk" * 1000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / FILE_NAME).write_bytes(content)
        with pytest.raises(StoreError, match=rf"{name}/{FILE_NAME}: .*move it aside"):
            check_existing(tmp_path / name)


def test_keeper_health_counts_silent_periods(store: Store) -> None:
    """Each commit counts the keepers that stayed silent in its period, keeping the last such period."""
    state = CommittedState(1, 10, "", {"outbox": "[]", "dead_letters": "[]", "processed_keys": "{}"})
    store.commit(state, 3, ["0xa"])
    store.commit(state, 4, [])
    store.commit(state, 5, ["0xa", "0xb"])
    assert store.keeper_health() == {"0xa": (2, 5), "0xb": (1, 5)}
