"""What the oracle remembers of scouts across restarts: which key owns which scout id, each
key's reputation and ban, and the accepted draft tokens that earn the scout tier."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from shard.store.database import Database
from shard.store.schema import ContributionRow, ScoutIdentityRow, ScoutReputationRow


@dataclass
class ReputationRecord:
    """A key's stored record as a scout; what the oracle makes of it is the swarm's business
    (`shard.swarm.reputation`)."""

    key_id: str
    tickets: int = 0
    ticket_score_sum: float = 0.0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    banned_at: datetime | None = None
    banned_until: datetime | None = None
    """None with `banned_at` set means banned for good."""
    ban_reason: str = ""

    def banned(self, now: datetime) -> bool:
        if self.banned_at is None:
            return False
        return self.banned_until is None or now < self.banned_until


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _reputation(row: ScoutReputationRow) -> ReputationRecord:
    return ReputationRecord(
        key_id=row.key_id,
        tickets=row.tickets,
        ticket_score_sum=row.ticket_score_sum,
        draft_tokens=row.draft_tokens,
        accepted_tokens=row.accepted_tokens,
        banned_at=_aware(row.banned_at),
        banned_until=_aware(row.banned_until),
        ban_reason=row.ban_reason,
    )


class ScoutRecordStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def claim(self, scout_id: str, key_id: str) -> str:
        """Bind a scout id to a key on first sight; returns the key it belongs to."""
        with self._db.session() as session:
            row = session.get(ScoutIdentityRow, scout_id)
            if row is None:
                row = ScoutIdentityRow(
                    scout_id=scout_id, key_id=key_id, first_seen=datetime.now(UTC)
                )
                session.add(row)
            return row.key_id

    def scout_ids_of(self, key_id: str) -> list[str]:
        with self._db.session() as session:
            query = select(ScoutIdentityRow.scout_id).where(ScoutIdentityRow.key_id == key_id)
            return list(session.scalars(query))

    def owner_of(self, scout_id: str) -> str | None:
        with self._db.session() as session:
            row = session.get(ScoutIdentityRow, scout_id)
            return row.key_id if row else None

    def reputation(self, key_id: str) -> ReputationRecord:
        with self._db.session() as session:
            row = session.get(ScoutReputationRow, key_id)
            return _reputation(row) if row else ReputationRecord(key_id)

    def save(self, reputation: ReputationRecord) -> None:
        with self._db.session() as session:
            row = session.get(ScoutReputationRow, reputation.key_id)
            if row is None:
                row = ScoutReputationRow(key_id=reputation.key_id)
                session.add(row)
            row.tickets = reputation.tickets
            row.ticket_score_sum = reputation.ticket_score_sum
            row.draft_tokens = reputation.draft_tokens
            row.accepted_tokens = reputation.accepted_tokens
            row.banned_at = reputation.banned_at
            row.banned_until = reputation.banned_until
            row.ban_reason = reputation.ban_reason

    def banned(self) -> list[ReputationRecord]:
        """Every key under a ban now."""
        now = datetime.now(UTC)
        with self._db.session() as session:
            query = select(ScoutReputationRow).where(ScoutReputationRow.banned_at.is_not(None))
            found = [_reputation(row) for row in session.scalars(query)]
        return [reputation for reputation in found if reputation.banned(now)]


class ContributionStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, key_id: str, accepted_tokens: int) -> None:
        hour = int(time.time() // 3600)
        with self._db.session() as session:
            row = session.get(ContributionRow, (key_id, hour))
            if row is None:
                session.add(
                    ContributionRow(key_id=key_id, hour=hour, accepted_tokens=accepted_tokens)
                )
            else:
                row.accepted_tokens += accepted_tokens

    def recent(self, key_id: str, window: timedelta) -> int:
        """Accepted draft tokens in the hours that overlap the last `window`."""
        since = int((time.time() - window.total_seconds()) // 3600)
        with self._db.session() as session:
            query = select(func.sum(ContributionRow.accepted_tokens)).where(
                ContributionRow.key_id == key_id, ContributionRow.hour >= since
            )
            return int(session.scalar(query) or 0)
