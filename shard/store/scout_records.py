"""What the oracle remembers of scouts across restarts: which key owns which scout id, each
key's reputation and ban, and the accepted draft tokens that earn the scout tier."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Update, func, select, update
from sqlalchemy.exc import IntegrityError

from shard.store.database import Database
from shard.store.schema import Base, ContributionRow, ScoutIdentityRow, ScoutReputationRow


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


@dataclass
class ReputationChange:
    """What one oracle adds to a key's record between two writes."""

    key_id: str
    tickets: int = 0
    ticket_score_sum: float = 0.0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    ban: tuple[datetime, datetime | None, str] | None = None
    """(banned_at, banned_until, reason) when this oracle banned the key."""

    def add(self, other: "ReputationChange") -> None:
        """Count `other` in too (its ban, if any, is the later one)."""
        self.tickets += other.tickets
        self.ticket_score_sum += other.ticket_score_sum
        self.draft_tokens += other.draft_tokens
        self.accepted_tokens += other.accepted_tokens
        self.ban = other.ban or self.ban


def _upsert(database: Database, increment: Update, new_row: Callable[[], Base]) -> None:
    """Run `increment`; where it found no row, insert one. Two oracles inserting the same
    row at once: the loser's insert fails, and its increment then finds the winner's row."""
    for attempt in (1, 2):
        try:
            with database.session() as session:
                if session.execute(increment).rowcount == 0:  # type: ignore[attr-defined]
                    session.add(new_row())
            return
        except IntegrityError:
            if attempt == 2:
                raise


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

    def reputations(self, key_ids: list[str]) -> dict[str, ReputationRecord]:
        """Several keys' records at once (a key with none gets an empty record)."""
        with self._db.session() as session:
            query = select(ScoutReputationRow).where(ScoutReputationRow.key_id.in_(key_ids))
            found = {row.key_id: _reputation(row) for row in session.scalars(query)}
        return {key_id: found.get(key_id) or ReputationRecord(key_id) for key_id in key_ids}

    def add(self, change: ReputationChange) -> None:
        """Add counts to a key's record, and set its ban if the change has one: increments in
        SQL, so oracles that share the store never write over each other's counts."""
        counts = {
            "tickets": ScoutReputationRow.tickets + change.tickets,
            "ticket_score_sum": ScoutReputationRow.ticket_score_sum + change.ticket_score_sum,
            "draft_tokens": ScoutReputationRow.draft_tokens + change.draft_tokens,
            "accepted_tokens": ScoutReputationRow.accepted_tokens + change.accepted_tokens,
        }
        if change.ban is not None:
            counts |= dict(
                zip(("banned_at", "banned_until", "ban_reason"), change.ban, strict=True)
            )
        statement = update(ScoutReputationRow).where(ScoutReputationRow.key_id == change.key_id)
        _upsert(self._db, statement.values(counts), lambda: self._new_row(change))

    @staticmethod
    def _new_row(change: ReputationChange) -> ScoutReputationRow:
        banned_at, banned_until, reason = change.ban or (None, None, "")
        return ScoutReputationRow(
            key_id=change.key_id,
            tickets=change.tickets,
            ticket_score_sum=change.ticket_score_sum,
            draft_tokens=change.draft_tokens,
            accepted_tokens=change.accepted_tokens,
            banned_at=banned_at,
            banned_until=banned_until,
            ban_reason=reason,
        )

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
        """Credit accepted draft tokens to this hour (an increment in SQL, as above)."""
        hour = int(time.time() // 3600)
        statement = (
            update(ContributionRow)
            .where(ContributionRow.key_id == key_id, ContributionRow.hour == hour)
            .values(accepted_tokens=ContributionRow.accepted_tokens + accepted_tokens)
        )
        _upsert(
            self._db,
            statement,
            lambda: ContributionRow(key_id=key_id, hour=hour, accepted_tokens=accepted_tokens),
        )

    def recent(self, key_id: str, window: timedelta) -> int:
        """Accepted draft tokens in the hours that overlap the last `window`."""
        since = int((time.time() - window.total_seconds()) // 3600)
        with self._db.session() as session:
            query = select(func.sum(ContributionRow.accepted_tokens)).where(
                ContributionRow.key_id == key_id, ContributionRow.hour >= since
            )
            return int(session.scalar(query) or 0)
