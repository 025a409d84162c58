"""Message handlers: the framework's own, with the ABCI one hardened against undecodable txs."""

from packages.valory.protocols.abci import AbciMessage
from packages.valory.skills.abstract_round_abci.base import Transaction
from packages.valory.skills.abstract_round_abci.dialogues import AbciDialogue
from packages.valory.skills.abstract_round_abci.handlers import (
    ABCIRoundHandler as BaseABCIRoundHandler,
)
from packages.valory.skills.abstract_round_abci.handlers import (
    ContractApiHandler as BaseContractApiHandler,
)
from packages.valory.skills.abstract_round_abci.handlers import (
    HttpHandler as BaseHttpHandler,
)
from packages.valory.skills.abstract_round_abci.handlers import (
    IpfsHandler as BaseIpfsHandler,
)
from packages.valory.skills.abstract_round_abci.handlers import (
    LedgerApiHandler as BaseLedgerApiHandler,
)
from packages.valory.skills.abstract_round_abci.handlers import (
    SigningHandler as BaseSigningHandler,
)
from packages.valory.skills.abstract_round_abci.handlers import (
    TendermintHandler as BaseTendermintHandler,
)


UNDECODABLE = "undecodable transaction"


def decodable(tx: bytes) -> bool:
    """Whether a tx parses at all; the framework only catches its own validation errors."""
    try:
        Transaction.decode(tx)
    except Exception:  # pylint: disable=broad-except
        return False
    return True


class ABCIHandler(BaseABCIRoundHandler):
    """Rejects txs that do not even decode (bad UTF-8, JSON or fields) instead of crashing the agent."""

    def check_tx(self, message: AbciMessage, dialogue: AbciDialogue) -> AbciMessage:
        """Handle 'check_tx'."""
        if not decodable(message.tx):
            return self._check_tx_failed(message, dialogue, UNDECODABLE)
        return super().check_tx(message, dialogue)

    def deliver_tx(self, message: AbciMessage, dialogue: AbciDialogue) -> AbciMessage:
        """Handle 'deliver_tx'."""
        if not decodable(message.tx):
            return self._deliver_tx_failed(message, dialogue, UNDECODABLE)
        return super().deliver_tx(message, dialogue)


HttpHandler = BaseHttpHandler
SigningHandler = BaseSigningHandler
LedgerApiHandler = BaseLedgerApiHandler
ContractApiHandler = BaseContractApiHandler
TendermintHandler = BaseTendermintHandler
IpfsHandler = BaseIpfsHandler
