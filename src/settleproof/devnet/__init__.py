"""The local network: N real ``aea run`` agents on N real Tendermint v0.34.19 validators, one per agent, on loopback.

Our tooling, never imported by the agent's packages. One module per job:

* ``tendermint``: the binary, one testnet's genesis and homes, their config (peers, timeouts);
* ``control_server``: the framework's Tendermint control server, run without Flask (one per node);
* ``nodes``: one node's processes (control server and ``tendermint node``), its RPC and its faults;
* ``links``: the P2P links between nodes, cut and healed to partition a node;
* ``agents`` and ``network``: agent folders, keys, environments, processes and faults (``Devnet``);
* ``cli``: ``settleproof devnet up``.

Consensus is Tendermint's own BFT: with 4 validators, any 3 make blocks.
"""
