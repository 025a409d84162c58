"""Dialogues of the chained skill: the settlement skill's, which are the framework's, and an http one that
also plays the server for requests arriving from the `valory/http_server` connection."""

from typing import Any

from aea.common import Address
from aea.protocols.base import Message
from aea.protocols.dialogue.base import Dialogue as BaseDialogue
from aea.skills.base import Model

from packages.settleproof.skills.settlement_abci.dialogues import (  # noqa: F401
    AbciDialogue,
    AbciDialogues,
    ContractApiDialogue,
    ContractApiDialogues,
    HttpDialogue,
    IpfsDialogue,
    IpfsDialogues,
    LedgerApiDialogue,
    LedgerApiDialogues,
    SigningDialogue,
    SigningDialogues,
    TendermintDialogue,
    TendermintDialogues,
)
from packages.valory.protocols.http.dialogues import HttpDialogues as BaseHttpDialogues


def http_role(message: Message, receiver_address: Address) -> BaseDialogue.Role:
    """Client for requests we send (http_client, webhook_client), server for requests sent to us."""
    if message.sender == receiver_address:
        return HttpDialogue.Role.CLIENT
    return HttpDialogue.Role.SERVER


class HttpDialogues(Model, BaseHttpDialogues):
    """The framework's http dialogues, with the role taken from who sent the first message."""

    def __init__(self, **kwargs: Any) -> None:
        """Initialize dialogues."""
        Model.__init__(self, **kwargs)
        BaseHttpDialogues.__init__(
            self, self_address=str(self.skill_id), role_from_first_message=http_role
        )
