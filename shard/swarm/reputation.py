"""How much the oracle trusts a scout's key, and when it bans it.

    golden = mean golden-ticket score (matching draft prefix / k), over every ticket since
             the last unban
    live   = accepted draft tokens / verified draft tokens, over the same time
    reputation = 0.7 * golden + 0.3 * live    (the one that exists, when only one does;
                                               1.0 with no evidence yet)

Golden tickets weigh more because their answer is known: live acceptance also reflects how
hard the user's text is to predict. A key still below the threshold after `min_tickets`
tickets is banned for `ban_seconds` (0: for good).
"""

from dataclasses import dataclass
from datetime import datetime

GOLDEN_WEIGHT = 0.7


@dataclass
class Reputation:
    key_id: str
    tickets: int = 0
    ticket_score_sum: float = 0.0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    banned_at: datetime | None = None
    banned_until: datetime | None = None
    """None with `banned_at` set means banned for good."""
    ban_reason: str = ""

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

    def banned(self, now: datetime) -> bool:
        if self.banned_at is None:
            return False
        return self.banned_until is None or now < self.banned_until


@dataclass(frozen=True)
class BanPolicy:
    threshold: float = 0.3
    min_tickets: int = 10
    ban_seconds: int = 3600

    def should_ban(self, reputation: Reputation) -> bool:
        return reputation.tickets >= self.min_tickets and reputation.score < self.threshold
