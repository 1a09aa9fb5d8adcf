"""Verification: how many draft tokens the target confirms (docs/architecture.md, invariant 2).

Drafts are point masses. The only question asked of draft token j is whether it equals the
token the target picks at position j; the first that differs is replaced by the target's
own (the recovered token), and when all match the target's next token is a bonus. So a draft
can cost time but never change output.
"""

from collections.abc import Iterable, Sequence


def accepted_count(draft: Sequence[int], targets: Iterable[int]) -> int:
    """How many leading draft tokens equal the target's tokens at the same positions.

    `targets` may be lazy (each is sampled only once the one before it was confirmed) and
    may end early (the sequence finished); it is read no further than the first mismatch.
    """
    accepted = 0
    for position, target in enumerate(targets):
        if position == len(draft) or target != draft[position]:
            break
        accepted += 1
    return accepted


def tried_tokens(decoded: int, accepted: int) -> int:
    """Draft tokens that were really put to the test: the accepted ones and the first miss
    (the ones after it were decoded but never compared)."""
    return min(decoded, accepted + 1)
