"""``python -m settleproof.testing``: run the agent folder in the working directory as a byzantine agent."""

from settleproof.testing.byzantine import main

main()
