"""Shard: an OpenAI-compatible oracle whose decoding a swarm of volunteer scouts speeds up."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shard")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
