"""Transaction payloads of the settlement rounds: typed fields, JSON text for structured values."""

from dataclasses import dataclass

from packages.valory.skills.abstract_round_abci.base import BaseTxPayload


@dataclass(frozen=True)
class RecoverStatePayload(BaseTxPayload):
    """The committed state this agent holds (`recovery.CommittedState` as JSON): the newer of its
    durable store's and its synchronized state's; and the digests of its vote-shaping settings
    (`settings_digest`, JSON)."""

    state: str
    settings: str


@dataclass(frozen=True)
class SelectKeeperPayload(BaseTxPayload):
    """The keeper this agent computes for the period."""

    keeper: str


@dataclass(frozen=True)
class FetchLogsQuorumPayload(BaseTxPayload):
    """This agent's observation of the period's range (`agreement.Observation` as JSON)."""

    observation: str


@dataclass(frozen=True)
class DedupePayload(BaseTxPayload):
    """The digest of the new events this agent derives from the agreed scan (`dedupe.NewEvents`),
    and the block time (unix seconds of the block that started the round) they enter the outbox at."""

    events_digest: str
    block_time: int


@dataclass(frozen=True)
class DeliverWebhookPayload(BaseTxPayload):
    """The keeper's delivery report (JSON list of `outbox.DeliveryResult`)."""

    delivery_report: str


@dataclass(frozen=True)
class KeeperFailoverPayload(BaseTxPayload):
    """The next keeper after a silent one, and how many failovers this period has seen."""

    keeper: str
    failovers: int


@dataclass(frozen=True)
class CheckpointPayload(BaseTxPayload):
    """The checkpoint this agent would commit, its block hash ("" if unknown), and the digest of
    the state it would hold (`recovery.CommittedState.digest`)."""

    checkpoint: int
    block_hash: str
    state_digest: str
