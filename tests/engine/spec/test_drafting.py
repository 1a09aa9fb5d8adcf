"""Draft sources and draft length on literal arrays."""

from shard.engine.spec.acceptance import DraftLength, MatchAcceptance
from shard.engine.spec.ngram import NgramIndex, NgramProposal
from shard.engine.spec.scout_drafts import usable_part
from shard.engine.types import ScoutDraft


def index_of(tokens: list[int]) -> NgramIndex:
    index = NgramIndex(min_n=2, max_n=3)
    index.extend(tokens)
    return index


def test_ngram_proposes_what_followed_the_latest_earlier_match() -> None:
    #            0  1  2  3  4  5  6  7  8  9
    index = index_of([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 5, 6, 7])
    # the suffix (5, 6, 7) occurred at 0 and 6; the latest earlier one is followed by 2, 3
    assert index.propose(2).tokens == [2, 3]
    assert index.propose(10).tokens == [2, 3, 5, 6, 7]


def test_ngram_match_length_extends_back_past_the_n_gram() -> None:
    index = NgramIndex(min_n=2, max_n=3)
    index.extend([4, 1, 2, 3, 5, 6, 9, 8, 1, 2, 3, 5, 6])
    # (3, 5, 6) found it; 1, 2 agree before that, 4 and 8 differ: 5 tokens of match
    assert index.propose(2) == NgramProposal([9, 8], 5)
    capped = NgramIndex(min_n=2, max_n=3, longest_match=4)
    capped.extend(index.tokens)
    assert capped.propose(1).match_length == 4


def test_ngram_falls_back_to_shorter_matches_and_to_nothing() -> None:
    assert index_of([1, 2, 9, 4, 2, 9]).propose(3) == NgramProposal([4, 2, 9], 2)
    assert index_of([1, 2, 3, 4]).propose(3) == NgramProposal([], 0)
    assert index_of([1, 2, 1, 2]).propose(0).tokens == []


def test_ngram_index_grows_with_generated_tokens() -> None:
    index = index_of([1, 2, 3])
    assert index.propose(1).tokens == []
    index.extend([1, 2])
    assert index.propose(2).tokens == [3, 1]


def test_match_acceptance_learns_per_match_length() -> None:
    table = MatchAcceptance(prior=0.9, prior_weight=10)
    assert table.rate(2) == 0.9  # no evidence: the prior
    for _ in range(40):
        table.record(2, 1, 0)  # guesses after 2-token matches are always wrong
        table.record(24, 8, 8)  # drafts after long matches always right
    assert table.rate(2) < 0.2
    assert table.rate(24) > 0.97
    assert table.rate(40) == table.rate(24)  # long matches share the last bucket
    assert table.rate(3) == 0.9  # other buckets untouched


def test_each_draft_token_counts_at_its_own_match_length() -> None:
    table = MatchAcceptance(prior=0.5, prior_weight=2)
    table.record(5, 2, 1)  # the token at match length 5 accepted, the one at 6 rejected
    assert table.rate(5) == (1 + 1) / (2 + 1)
    assert table.rate(6) == (1 + 0) / (2 + 1)
    assert table.rate(7) == 0.5  # never checked: verification stops at the first miss
    # a draft found with match length 5: its tokens are judged at lengths 5, 6 and 7
    assert table.chances(5, 3) == [
        table.rate(5),
        table.rate(5) * table.rate(6),
        table.rate(5) * table.rate(6) * table.rate(7),
    ]


def test_match_acceptance_forgets_old_evidence() -> None:
    table = MatchAcceptance(prior=0.5, prior_weight=2, memory=20)
    for _ in range(100):
        table.record(8, 1, 0)
    assert table.rate(8) < 0.05  # old evidence halves away instead of weighing forever


def test_draft_length_grows_with_acceptance_and_drops_to_zero() -> None:
    length = DraftLength(k_max=16, min_acceptance=0.5)
    assert length.next_k() == 0  # no evidence yet: verify nothing
    for _ in range(10):
        length.record(4, 4)
    assert length.next_k() == 16
    for _ in range(4):
        length.record(4, 0)
    assert length.next_k() == 0
    half = DraftLength(k_max=16, min_acceptance=0.5)
    half.rate = 0.6
    assert 2 <= half.next_k() < 16


def test_draft_length_off_when_k_max_is_zero() -> None:
    length = DraftLength(k_max=0, min_acceptance=0.0)
    length.record(1, 1)
    assert length.next_k() == 0


def test_scout_draft_is_aligned_with_decided_tokens() -> None:
    history = [10, 11, 12, 13]
    # drafted for positions 2.. when the sequence had 2 tokens: 12, 13 decided since, agreeing
    assert usable_part(history, ScoutDraft("s", 2, (12, 13, 14, 15))) == ([14, 15], 2, 2)
    # it disagreed at position 3: of no further use; 2 tokens scored, 1 matched
    assert usable_part(history, ScoutDraft("s", 2, (12, 99, 14))) == ([], 2, 1)
    # a draft from the future or before the start is unusable
    assert usable_part(history, ScoutDraft("s", 9, (1,))) == ([], 0, 0)
    assert usable_part(history, ScoutDraft("s", 4, (7, 8))) == ([7, 8], 0, 0)


def test_ngram_copies_from_the_place_with_the_longest_match() -> None:
    index = NgramIndex(min_n=2, max_n=2)
    #                 the passage being copied         a later, shorter echo of (5, 6)
    index.extend([1, 2, 3, 5, 6, 7, 8, 9, 0, 0, 5, 6, 4, 4, 1, 2, 3, 5, 6])
    assert index.propose(3) == NgramProposal([7, 8, 9], 5)
    latest_only = NgramIndex(min_n=2, max_n=2, keep=1)
    latest_only.extend(index.tokens)
    assert latest_only.propose(3) == NgramProposal([4, 4, 1], 2)
