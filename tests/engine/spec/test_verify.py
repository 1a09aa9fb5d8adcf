"""Verification on literal arrays: a draft is kept up to the first token the target differs
on, whatever the draft (docs/architecture.md, invariant 2)."""

from collections.abc import Iterator

import pytest

from shard.engine.spec.verify import accepted_count, tried_tokens


@pytest.mark.parametrize(
    ("draft", "targets", "accepted"),
    [
        ([5, 6, 7], [5, 6, 7, 8], 3),  # all accepted; 8 is the bonus token
        ([5, 6, 7], [5, 6, 9, 8], 2),  # 9 is the recovered token
        ([5, 6, 7], [4, 6, 7, 8], 0),  # a wrong first token wastes the whole draft
        ([], [3], 0),  # no draft: the target's token alone
        ([5, 6, 7], [5, 6], 2),  # the sequence finished on the second token
        ([5, 5, 5], [5, 4, 5, 5], 1),  # later agreement does not count after a miss
    ],
)
def test_accepted_count(draft: list[int], targets: list[int], accepted: int) -> None:
    assert accepted_count(draft, targets) == accepted


def test_targets_are_read_no_further_than_the_first_miss() -> None:
    read: list[int] = []

    def lazy() -> Iterator[int]:
        for token in [1, 2, 3, 4, 5]:
            read.append(token)
            yield token

    assert accepted_count([1, 9, 3, 4], lazy()) == 1
    assert read == [1, 2]  # sampling stops at the recovered token


def test_tried_tokens_are_the_accepted_and_the_first_miss() -> None:
    assert tried_tokens(decoded=4, accepted=1) == 2
    assert tried_tokens(decoded=4, accepted=4) == 4
    assert tried_tokens(decoded=0, accepted=0) == 0
