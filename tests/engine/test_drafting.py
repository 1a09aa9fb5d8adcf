"""Draft sources and draft length on literal arrays."""

from shard.engine.drafting import DraftLength, NgramIndex, ScoutDraft, usable_part


def index_of(tokens: list[int]) -> NgramIndex:
    index = NgramIndex(min_n=2, max_n=3)
    index.extend(tokens)
    return index


def test_ngram_proposes_what_followed_the_latest_earlier_match() -> None:
    #            0  1  2  3  4  5  6  7  8  9
    index = index_of([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 5, 6, 7])
    # the suffix (5, 6, 7) occurred at 0 and 6; the latest earlier one is followed by 2, 3
    assert index.propose(2) == [2, 3]
    assert index.propose(10) == [2, 3, 5, 6, 7]


def test_ngram_falls_back_to_shorter_matches_and_to_nothing() -> None:
    assert index_of([1, 2, 9, 4, 2, 9]).propose(3) == [4, 2, 9]  # only (2, 9) matches
    assert index_of([1, 2, 3, 4]).propose(3) == []
    assert index_of([1, 2, 1, 2]).propose(0) == []


def test_ngram_index_grows_with_generated_tokens() -> None:
    index = index_of([1, 2, 3])
    assert index.propose(1) == []
    index.extend([1, 2])
    assert index.propose(2) == [3, 1]


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
