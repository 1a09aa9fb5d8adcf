"""Benchmarks that compare Shard with the llama.cpp servers it should beat."""
