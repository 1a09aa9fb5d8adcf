"""Draft sources on literal sequences: what each proposes, and what it reports."""

from dataclasses import dataclass, field

from shard.engine.spec.planner import best_offer, padded_draft
from shard.engine.spec.prediction import PredictionAlignment
from shard.engine.spec.proposers import (
    NgramProposer,
    PredictionProposer,
    Proposal,
    ScoutProposer,
    shadow_score,
)
from shard.engine.spec.scout_drafts import DraftSink
from shard.engine.types import NGRAM, PREDICTION, SCOUT, DraftOutcome, ScoutDraft


@dataclass
class Sequence:
    key: str
    tokens: list[int] = field(default_factory=list)
    alignment: PredictionAlignment | None = None


def test_ngram_proposer_follows_the_sequence_as_it_grows() -> None:
    reports: list[DraftOutcome] = []
    proposer = NgramProposer(k_max=3, report=reports.append)
    sequence = Sequence("a", [1, 2, 3, 4, 1, 2])
    proposal = proposer.propose(sequence, 8)
    assert proposal.tokens == [3, 4, 1]  # k_max caps the draft
    assert proposal.match_length == 2 and len(proposal.chances) == 3
    sequence.tokens += [3, 4]
    assert proposer.propose(sequence, 1).tokens == [1]
    proposer.verified(sequence, proposal, decoded=3, accepted=1)
    assert reports == [DraftOutcome(NGRAM, None, 3, 1)]
    proposer.forget("a")
    assert proposer.propose(Sequence("a", [5, 6]), 3).tokens == []


def test_prediction_proposer_drafts_from_where_the_output_stands() -> None:
    reports: list[DraftOutcome] = []
    proposer = PredictionProposer(k_max=3, report=reports.append)
    alignment = PredictionAlignment([1, 2, 3, 4, 5, 6])
    sequence = Sequence("p", [90, 91, 1], alignment)
    alignment.advance(1)  # the engine advances it with each sampled token
    proposal = proposer.propose(sequence, 8)
    assert (proposal.source, proposal.tokens, proposal.match_length) == (PREDICTION, [2, 3, 4], 1)
    alignment.advance(2)
    alignment.advance(9)  # the output leaves the prediction: no place, no draft
    assert proposer.propose(sequence, 8).tokens == []
    proposer.verified(sequence, proposal, decoded=3, accepted=1)
    assert reports == [DraftOutcome(PREDICTION, None, 3, 1)]
    assert proposer.propose(Sequence("q", [1]), 3).tokens == []  # no prediction


def test_scout_proposer_credits_only_drafts_that_were_ahead_of_the_sequence() -> None:
    sink, reports = DraftSink(), list[DraftOutcome]()
    proposer = ScoutProposer(sink, k_max=4, min_acceptance=0.5, n_vocab=100, report=reports.append)
    sequence = Sequence("s", [10, 11])
    assert proposer.propose(sequence, 4).tokens == []  # nothing posted yet
    sink.offer("s", ScoutDraft("scout-1", 2, (12, 13, 14, 15)))
    assert proposer.propose(sequence, 4).tokens == []  # no record yet: scored, not verified
    sequence.tokens += [12, 13, 14]  # the oracle decided what the scout had drafted ahead
    proposer.propose(sequence, 4)
    assert reports == [DraftOutcome(SCOUT, "scout-1", 3, 3)]  # timely: credited
    for _ in range(3):
        sink.offer("s", ScoutDraft("scout-1", len(sequence.tokens), (7, 8, 9)))
        sequence.tokens += [7, 8, 9]  # decided before any step saw the draft
        proposer.propose(sequence, 4)
    late = DraftOutcome(SCOUT, "scout-1", 3, 3, timely=False)
    wrong = DraftOutcome(SCOUT, "scout-1", 1, 0)  # the first draft's last token, ahead then
    assert reports[1:] == [wrong, late, late, late]  # right, but late: no credit
    del reports[1:]
    sink.offer("s", ScoutDraft("scout-1", len(sequence.tokens), (1, 2, 300)))
    proposal = proposer.propose(sequence, 4)
    assert proposal.source == SCOUT and proposal.scout_id == "scout-1"
    assert proposal.tokens == [1, 2]  # an id outside the vocabulary ends the usable draft
    proposer.verified(sequence, proposal, decoded=2, accepted=1)
    assert reports[1:] == [DraftOutcome(SCOUT, "scout-1", 2, 1)]
    proposer.forget("s")
    assert sink.latest("s") is None


def test_best_offer_prefers_more_expected_tokens_then_the_first() -> None:
    weak = Proposal(NGRAM, [1, 2], [0.5, 0.2])
    strong = Proposal(SCOUT, [3], [0.9])
    empty = Proposal(SCOUT)
    assert best_offer([("a", weak), ("b", strong)])[1] is strong
    assert best_offer([("a", strong), ("b", Proposal(NGRAM, [4], [0.9]))])[0] == "a"
    assert best_offer([("a", empty)]) == (None, Proposal(NGRAM))


def test_padded_draft_takes_k_tokens_within_room() -> None:
    assert padded_draft([5, 6, 7], k=2, room=10, next_token=1) == [5, 6]
    assert padded_draft([5], k=3, room=10, next_token=1) == [5, 5, 5]
    assert padded_draft([], k=2, room=10, next_token=1) == [1, 1]
    assert padded_draft([5, 6, 7], k=3, room=1, next_token=1) == [5]


def test_a_proposal_that_was_not_verified_is_scored_against_what_was_decided() -> None:
    assert shadow_score([5, 6, 7], [5, 6, 7, 8]) == (3, 3)
    assert shadow_score([5, 6, 7], [5, 9, 7, 8]) == (2, 1)  # up to the first miss
    assert shadow_score([5, 6, 7], [5]) == (1, 1)  # only what the step decided
    assert shadow_score([5, 6, 7], [4]) == (1, 0)
