"""The swarm: scouts that draft tokens, and the oracle-side hub that verifies and ranks them."""
