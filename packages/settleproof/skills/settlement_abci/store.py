"""Each agent's durable store: SQLite in `$SETTLEPROOF_DATA_DIR`, written once per agreed checkpoint.

Why: synchronized state lives in memory and in a chain that can be reset; the
store keeps what a restart needs (the last committed state, exactly as agents
voted on it) and what an operator needs (the dead-letter queue and its
replays, every processed key) on disk. Guarantees:

* one transaction per agreed checkpoint (committed state, outbox, new dead
  letters and new processed keys together), so the file never holds half a
  period; WAL mode with `synchronous=FULL`, so a committed checkpoint survives
  a crash;
* keeper health (how often each agent stayed silent as keeper) is counted;
* dead letters and processed keys are only ever inserted: never updated,
  deleted or truncated; long histories stay on disk, only the committed state
  (which holds a bounded window of keys) is read back;
* the schema is versioned (`schema_version`) and only moves forward through
  `MIGRATIONS`; a file from a newer agent is refused, not guessed at, and so
  is a damaged one (`PRAGMA quick_check`, the committed state's digest).

No framework import: the agent, the operator CLI and tests all use it.
"""

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from packages.settleproof.skills.settlement_abci.outbox import (
    OutboxEntry,
    load_entries,
    load_processed,
)
from packages.settleproof.skills.settlement_abci.recovery import CommittedState


DEFAULT_DATA_DIR = "data"  # relative to the agent's working directory
FILE_NAME = "settleproof.sqlite3"
ENTRY_COLUMNS = (
    "id, body, attempts, last_status, last_error, created_at, next_attempt_at, "
    "last_attempt_at, dead_reason, acknowledgements"
)

#: MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit: a released
#: migration has run on someone's disk.
MIGRATIONS: Tuple[Tuple[str, ...], ...] = (
    (
        """CREATE TABLE checkpoint (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            block INTEGER,
            block_hash TEXT,
            period INTEGER NOT NULL
        )""",
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY, body TEXT NOT NULL, attempts INTEGER NOT NULL,
            last_status INTEGER NOT NULL, last_error TEXT NOT NULL, created_at INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL, last_attempt_at INTEGER NOT NULL,
            dead_reason TEXT NOT NULL CHECK (dead_reason = '')
        )""",
        """CREATE TABLE dead_letters (
            id TEXT PRIMARY KEY, body TEXT NOT NULL, attempts INTEGER NOT NULL,
            last_status INTEGER NOT NULL, last_error TEXT NOT NULL, created_at INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL, last_attempt_at INTEGER NOT NULL,
            dead_reason TEXT NOT NULL CHECK (dead_reason <> ''),
            period INTEGER NOT NULL
        )""",
        "CREATE INDEX dead_letters_by_time ON dead_letters (last_attempt_at, id)",
        """CREATE TABLE replays (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL REFERENCES dead_letters (id),
            replayed_at INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT NOT NULL
        )""",
        "CREATE INDEX replays_by_event ON replays (event_id, seq)",
    ),
    (
        "ALTER TABLE checkpoint ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE checkpoint ADD COLUMN state TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE processed (
            key TEXT PRIMARY KEY, block INTEGER NOT NULL, period INTEGER NOT NULL
        )""",
        """CREATE TABLE keeper_health (
            address TEXT PRIMARY KEY, silent_periods INTEGER NOT NULL, last_silent_period INTEGER NOT NULL
        )""",
    ),
    (
        "ALTER TABLE outbox ADD COLUMN acknowledgements INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE dead_letters ADD COLUMN acknowledgements INTEGER NOT NULL DEFAULT 0",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The store cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """The last agreed checkpoint this agent stored, the period and the commit number it came with."""

    block: Optional[int]
    block_hash: Optional[str]
    period: int
    seq: int = 0


@dataclass(frozen=True)
class Replay:
    """One operator replay of a dead letter: when (unix seconds), and what the merchant answered."""

    event_id: str
    replayed_at: int
    status: int
    error: str = ""

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


class Store:
    """One agent's SQLite store; open it with `Store.open(data_dir)`."""

    def __init__(self, path: Union[str, Path]) -> None:
        """Open (creating if needed) and migrate the file at `path`."""
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 10000")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise StoreError(
                f"{self.path}: not a usable SettleProof store ({error}); "
                "move it aside to start from the agreed state"
            ) from None
        if str(mode).lower() != "wal":  # pragma: no cover  (e.g. a file system without shared memory)
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode})")
        if verdict != "ok":
            raise StoreError(f"{self.path}: damaged ({verdict}); move it aside to start from the agreed state")

    @classmethod
    def open(cls, data_dir: Optional[Union[str, Path]] = None) -> "Store":
        """The store in `data_dir` (default `./data`), creating the folder."""
        folder = Path(data_dir or DEFAULT_DATA_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / FILE_NAME)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def schema_version(self) -> int:
        """The file's schema version (0 for a new file)."""
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this agent's "
                f"{SCHEMA_VERSION}; run the newer agent, or move the file aside"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self._transaction() as db:
                for statement in MIGRATIONS[version - 1]:
                    db.execute(statement)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    # ---------------------------------------------------------------- written by the agent

    def commit(self, state: CommittedState, period: int, silent_keepers: Sequence[str] = ()) -> None:
        """Store one committed state in one transaction: the outbox is replaced, dead letters and
        processed keys added, and the keepers that stayed silent this period counted."""
        values = state.values
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoint (id, block, block_hash, period, seq, state) "
                "VALUES (1, ?, ?, ?, ?, ?)",
                (state.checkpoint, state.checkpoint_hash or None, period, state.seq, state.to_json()),
            )
            db.execute("DELETE FROM outbox")
            db.executemany(
                f"INSERT INTO outbox ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(entry) for entry in load_entries(values["outbox"])],
            )
            db.executemany(
                f"INSERT OR IGNORE INTO dead_letters ({ENTRY_COLUMNS}, period) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*_row(entry), period) for entry in load_entries(values["dead_letters"])],
            )
            db.executemany(
                "INSERT OR IGNORE INTO processed (key, block, period) VALUES (?, ?, ?)",
                [(key, block, period) for key, block in load_processed(values["processed_keys"]).items()],
            )
            db.executemany(
                "INSERT INTO keeper_health (address, silent_periods, last_silent_period) VALUES (?, 1, ?) "
                "ON CONFLICT (address) DO UPDATE SET silent_periods = silent_periods + 1, "
                "last_silent_period = excluded.last_silent_period",
                [(address, period) for address in silent_keepers],
            )

    # ---------------------------------------------------------------- read by the agent and the CLI

    def checkpoint(self) -> Optional[Checkpoint]:
        """The last stored checkpoint, or None for a new store."""
        row = self._db.execute("SELECT block, block_hash, period, seq FROM checkpoint").fetchone()
        return None if row is None else Checkpoint(*row)

    def committed_state(self) -> Optional[CommittedState]:
        """The last committed state exactly as the agents voted on it, or None for a new store;
        raises StoreError when the stored copy does not match its digest."""
        row = self._db.execute("SELECT state FROM checkpoint").fetchone()
        if row is None or not row[0]:
            return None
        try:
            return CommittedState.from_json(row[0])
        except ValueError as error:
            raise StoreError(f"{self.path}: {error}; move it aside to start from the agreed state") from None

    def keeper_health(self) -> Dict[str, Tuple[int, int]]:
        """Keeper address -> (periods it stayed silent as keeper, the last such period)."""
        rows = self._db.execute("SELECT address, silent_periods, last_silent_period FROM keeper_health")
        return {address: (count, last) for address, count, last in rows}

    def processed_count(self) -> int:
        """How many processed keys the store holds (all of them, not only the synchronized window)."""
        return int(self._db.execute("SELECT COUNT(*) FROM processed").fetchone()[0])

    def outbox(self) -> List[OutboxEntry]:
        """The outbox at the last stored checkpoint, by id."""
        rows = self._db.execute(f"SELECT {ENTRY_COLUMNS} FROM outbox ORDER BY id")
        return [OutboxEntry(*row) for row in rows]

    def dead_letters(self, since: Optional[int] = None) -> List[OutboxEntry]:
        """Dead letters (given up on at or after `since`, block time), oldest first."""
        rows = self._db.execute(
            f"SELECT {ENTRY_COLUMNS} FROM dead_letters WHERE last_attempt_at >= ? "
            "ORDER BY last_attempt_at, id",
            (since or 0,),
        )
        return [OutboxEntry(*row) for row in rows]

    def dead_letter(self, event_id: str) -> Optional[OutboxEntry]:
        """One dead letter by id."""
        row = self._db.execute(
            f"SELECT {ENTRY_COLUMNS} FROM dead_letters WHERE id = ?", (event_id,)
        ).fetchone()
        return None if row is None else OutboxEntry(*row)

    # ---------------------------------------------------------------- replays (operator CLI)

    def record_replay(self, replay: Replay) -> None:
        """Keep one replay's outcome."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO replays (event_id, replayed_at, status, error) VALUES (?, ?, ?, ?)",
                (replay.event_id, replay.replayed_at, replay.status, replay.error),
            )

    def replays(self, event_id: Optional[str] = None) -> List[Replay]:
        """Replays in the order they happened, of one event or of all."""
        query = "SELECT event_id, replayed_at, status, error FROM replays"
        rows = (
            self._db.execute(query + " WHERE event_id = ? ORDER BY seq", (event_id,))
            if event_id is not None
            else self._db.execute(query + " ORDER BY seq")
        )
        return [Replay(*row) for row in rows]


def check_existing(data_dir: Optional[Union[str, Path]] = None) -> None:
    """Open and check the store in `data_dir` if there is one (creating nothing); raises StoreError
    for a damaged, truncated or newer-schema file, so the agent refuses to start with one line."""
    path = Path(data_dir or DEFAULT_DATA_DIR) / FILE_NAME
    if not path.exists():
        return
    if path.stat().st_size == 0:
        raise StoreError(f"{path}: empty file (truncated?); move it aside to start from the agreed state")
    store = Store(path)
    try:
        store.committed_state()
    finally:
        store.close()


def _row(entry: OutboxEntry) -> Tuple:
    return (
        entry.id, entry.body, entry.attempts, entry.last_status, entry.last_error,
        entry.created_at, entry.next_attempt_at, entry.last_attempt_at, entry.dead_reason,
        entry.acknowledgements,
    )
