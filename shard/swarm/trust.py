"""The hub's memory of scout keys: identity, reputation, bans and contribution credit.

Kept in the store (DESIGN.md invariant 6) so none of it is shed by a restart or by
reconnecting under a new scout id. Live counters are cached here and written in batches.
"""

from datetime import UTC, datetime, timedelta

from shard.store.scout_records import ContributionStore, ScoutRecordStore
from shard.swarm.protocol import CLOSE_BANNED, CLOSE_PROTOCOL_ERROR
from shard.swarm.reputation import BanPolicy, Reputation


class Trust:
    def __init__(
        self, records: ScoutRecordStore, contributions: ContributionStore, policy: BanPolicy
    ) -> None:
        self.records = records
        self.contributions = contributions
        self.policy = policy
        self._reputations: dict[str, Reputation] = {}
        self._credits: dict[str, int] = {}
        self._dirty: set[str] = set()

    def refusal(self, scout_id: str, key_id: str) -> tuple[int, str] | None:
        """Why a scout may not join (its id is another key's, or its key is banned)."""
        owner = self.records.claim(scout_id, key_id)
        if owner != key_id:
            return CLOSE_PROTOCOL_ERROR, f"scout id {scout_id} belongs to another key"
        reputation = self.reputation(key_id)
        if reputation.banned(datetime.now(UTC)):
            until = (
                f"until {reputation.banned_until.isoformat(timespec='seconds')}"
                if reputation.banned_until
                else "for good"
            )
            return CLOSE_BANNED, f"banned {until}: {reputation.ban_reason}"
        return None

    def reputation(self, key_id: str) -> Reputation:
        cached = self._reputations.get(key_id)
        if cached is None:
            cached = self._reputations[key_id] = self.records.reputation(key_id)
        return cached

    def record_drafts(self, key_id: str, verified: int, accepted: int) -> None:
        reputation = self.reputation(key_id)
        reputation.draft_tokens += verified
        reputation.accepted_tokens += accepted
        self._dirty.add(key_id)
        if accepted:
            self._credits[key_id] = self._credits.get(key_id, 0) + accepted

    def record_ticket(self, key_id: str, score: float) -> bool:
        """Count a golden ticket; True when it gets the key banned."""
        reputation = self.reputation(key_id)
        reputation.tickets += 1
        reputation.ticket_score_sum += score
        banned = not reputation.banned(datetime.now(UTC)) and self.policy.should_ban(reputation)
        if banned:
            now = datetime.now(UTC)
            seconds = self.policy.ban_seconds
            reputation.banned_at = now
            reputation.banned_until = now + timedelta(seconds=seconds) if seconds else None
            reputation.ban_reason = (
                f"reputation {reputation.score:.2f} below {self.policy.threshold} after "
                f"{reputation.tickets} golden tickets"
            )
        self.records.save(reputation)
        self._dirty.discard(key_id)
        return banned

    def flush(self) -> None:
        """Write live counters and contribution credit to the store."""
        for key_id in list(self._dirty):
            self.records.save(self.reputation(key_id))
        self._dirty.clear()
        credits, self._credits = self._credits, {}
        for key_id, tokens in credits.items():
            self.contributions.add(key_id, tokens)

    def unban(self, key_id: str) -> Reputation:
        """Lift a ban and start the record afresh (old tickets would ban it again at once)."""
        reputation = Reputation(key_id)
        self._reputations[key_id] = reputation
        self.records.save(reputation)
        return reputation

    def banned(self) -> list[Reputation]:
        self.flush()
        return self.records.banned()
