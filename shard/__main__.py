"""`python -m shard` is the same as the `shard` command."""

from shard.cli import main

main()
