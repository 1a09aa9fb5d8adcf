"""The prefix cache's bound: free sequences keep at most `capacity` tokens, and the least
recently freed caches go first."""

from shard.engine.prefix_cache import SequencePool
from tests.fake_model import FakeModel


def test_caches_past_the_capacity_are_dropped_least_recently_freed_first() -> None:
    model = FakeModel()
    pool = SequencePool(3, capacity=10)
    taken = [pool.take()[0] for _ in range(3)]
    assert taken == [0, 1, 2]
    first, second = list(range(100, 106)), list(range(200, 206))
    model.caches = {0: list(first), 1: list(second), 2: []}

    pool.give_back(model, 0, first)
    assert pool.cached_tokens == 6 and pool.longest_prefix([*first, 1]) == (0, 6)

    pool.give_back(model, 1, second)  # 12 tokens > 10: sequence 0 was freed first
    assert pool.cached_tokens == 6
    assert model.caches[0] == [] and model.caches[1] == second
    assert pool.longest_prefix([*first, 1]) == (None, 0)
    assert pool.longest_prefix([*second, 1]) == (1, 6)

    pool.give_back(model, 2, [])
    assert pool.cached_tokens == 6 and model.caches[1] == second


def test_without_a_capacity_every_free_sequence_keeps_its_cache() -> None:
    model = FakeModel()
    pool = SequencePool(2)
    for seq_id in (pool.take()[0], pool.take()[0]):
        tokens = list(range(seq_id * 100, seq_id * 100 + 50))
        model.caches[seq_id] = list(tokens)
        pool.give_back(model, seq_id, tokens)
    assert pool.cached_tokens == 100 and all(len(cache) == 50 for cache in model.caches.values())
