"""Message handlers of the chained skill: the settlement skill's, which are the framework's."""

from packages.settleproof.skills.settlement_abci.handlers import (  # noqa: F401
    ABCIHandler,
    ContractApiHandler,
    HttpHandler,
    IpfsHandler,
    LedgerApiHandler,
    SigningHandler,
    TendermintHandler,
)
