"""How much the oracle trusts a scout's key, and when it bans it.

    golden = mean golden-ticket score (matching draft prefix / tokens drafted), over every
             ticket since the last unban
    live   = accepted draft tokens / verified draft tokens, over the same time
    reputation = 0.7 * golden + 0.3 * live    (the one that exists, when only one does;
                                               1.0 with no evidence yet)

Golden tickets weigh more because their answer is known: live acceptance also reflects how
hard the user's text is to predict. A key still below the threshold after `min_tickets`
tickets is banned for `ban_seconds` (0: for good).

The figures are the store's `ReputationRecord`; what they add up to is decided here, so the
store never needs the swarm.
"""

from dataclasses import dataclass, fields

from shard.store.scout_records import ReputationRecord

GOLDEN_WEIGHT = 0.7


@dataclass
class Reputation(ReputationRecord):
    """A key's stored figures and the score the oracle gives them."""

    @classmethod
    def of(cls, record: ReputationRecord) -> "Reputation":
        return cls(**{field.name: getattr(record, field.name) for field in fields(record)})

    @property
    def golden(self) -> float | None:
        return self.ticket_score_sum / self.tickets if self.tickets else None

    @property
    def live(self) -> float | None:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None

    @property
    def score(self) -> float:
        golden, live = self.golden, self.live
        if golden is None and live is None:
            return 1.0
        if golden is None:
            assert live is not None
            return live
        if live is None:
            return golden
        return GOLDEN_WEIGHT * golden + (1 - GOLDEN_WEIGHT) * live


@dataclass(frozen=True)
class BanPolicy:
    threshold: float = 0.3
    min_tickets: int = 10
    ban_seconds: int = 3600

    def should_ban(self, reputation: Reputation) -> bool:
        return reputation.tickets >= self.min_tickets and reputation.score < self.threshold
