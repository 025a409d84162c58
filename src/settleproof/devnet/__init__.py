"""A single-validator development chain in Python that plays Tendermint's part for N real agents.

Our tooling, never imported by the agent's packages. One module per job:

* ``abci_client``: the ABCI socket client (the framework's protobuf types and framing);
* ``chain``: chains, blocks and their wire form;
* ``validator``: the mempool, block production and the choice of chain at hard resets;
* ``node``: one agent's node: handshake, replay, live delivery, restarts, pause;
* ``rpc``: that node's Tendermint RPC and com servers;
* ``server``: all of the above in one asyncio loop on a thread (``DevChain``);
* ``agents`` and ``network``: agent folders, keys, environments, processes and faults (``Devnet``);
* ``cli``: ``settleproof devnet up``.

Scope: one validator makes every block and each agent's node follows it, so
all agents see the same ordered blocks; there is no BFT consensus among nodes.
Production runs real Tendermint (``autonomy deploy build``).
"""
