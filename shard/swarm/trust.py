"""The hub's memory of scout keys: identity, reputation, bans and contribution credit.

Kept in the store (docs/architecture.md, invariant 6) so none of it is shed by a restart or by
reconnecting under a new scout id, and shared by every oracle on that store: each writes what
it counted as increments (never a snapshot over another's), bans as soon as they happen, and
reads the records back on every write, so a ban or an unban made through one oracle holds on
all of them within a flush (a second) and is checked afresh at every connect.

Two kinds of caller, two kinds of method:
- the event loop records drafts and tickets and reads cached reputations: memory only, never
  the store;
- worker threads (`asyncio.to_thread`) do the store work: the handshake's refusal, flushing,
  bans and unbans, owner lookups.

`_lock` guards the caches for both and is never held across a store call; `_writing` keeps
one write at a time.
"""

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shard.store.scout_records import (
    ContributionStore,
    ReputationChange,
    ReputationRecord,
    ScoutRecordStore,
)
from shard.swarm.protocol import CLOSE_BANNED, CLOSE_PROTOCOL_ERROR
from shard.swarm.reputation import BanPolicy, Reputation

log = logging.getLogger(__name__)


class Trust:
    def __init__(
        self, records: ScoutRecordStore, contributions: ContributionStore, policy: BanPolicy
    ) -> None:
        self._records = records
        self._contributions = contributions
        self.policy = policy
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._reputations: dict[str, Reputation] = {}
        """What the store held at the last read, plus what this oracle counted since."""
        self._pending: dict[str, ReputationChange] = {}
        """What this oracle counted and has not written yet."""
        self._credits: dict[str, int] = {}
        self._banned_elsewhere: list[Reputation] = []
        """Keys a read found newly banned (by another oracle), for the next flush to report."""

    # -- store work: call these from a worker thread ----------------------------------------

    def refusal(self, scout_id: str, key_id: str) -> tuple[int, str] | None:
        """Why a scout may not join (its id is another key's, or its key is banned), from
        the store as it is now (another oracle may have banned or unbanned the key). Caches
        the key's reputation, so the event loop finds it there from now on."""
        owner = self._records.claim(scout_id, key_id)
        if owner != key_id:
            return CLOSE_PROTOCOL_ERROR, f"scout id {scout_id} belongs to another key"
        with self._writing:  # not between a flush's write and its read: counts would vanish
            self._reload({key_id: self._records.reputation(key_id)})
        reputation = self.known(key_id)
        assert reputation is not None
        if reputation.banned(datetime.now(UTC)):
            until = (
                f"until {reputation.banned_until.isoformat(timespec='seconds')}"
                if reputation.banned_until
                else "for good"
            )
            return CLOSE_BANNED, f"banned {until}: {reputation.ban_reason}"
        return None

    def flush(self) -> None:
        """Write what was counted, then read every cached key's record back. What fails to
        be written is kept for the next flush."""
        with self._writing:
            with self._lock:
                pending, self._pending = list(self._pending.values()), {}
                credits, self._credits = self._credits, {}
                cached = list(self._reputations)
            try:
                while pending:
                    self._records.add(pending[-1])
                    pending.pop()
                while credits:
                    key_id, tokens = next(iter(credits.items()))
                    self._contributions.add(key_id, tokens)
                    del credits[key_id]
            finally:
                if pending or credits:
                    with self._lock:
                        for change in pending:
                            self._pending_for(change.key_id).add(change)
                        for key_id, tokens in credits.items():
                            self._credits[key_id] = self._credits.get(key_id, 0) + tokens
            if cached:
                self._reload(self._records.reputations(cached))

    def take_banned_elsewhere(self) -> list[Reputation]:
        """Keys that reads of the store (a flush's, a connect's) found newly banned through
        another oracle, each once: their scouts here must go."""
        with self._lock:
            found, self._banned_elsewhere = self._banned_elsewhere, []
        return found

    def _reload(self, stored: dict[str, ReputationRecord]) -> None:
        """Take the store's records, with what was counted here since, as the cache; keys
        that became banned by it are kept for the next flush to report."""
        now = datetime.now(UTC)
        with self._lock:
            for key_id, record in stored.items():
                fresh = Reputation.of(record)
                change = self._pending.get(key_id)
                if change is not None:
                    _apply(fresh, change)
                before = self._reputations.get(key_id)
                if before is not None and not before.banned(now) and fresh.banned(now):
                    self._banned_elsewhere.append(replace(fresh))
                self._reputations[key_id] = fresh

    def _pending_for(self, key_id: str) -> ReputationChange:
        change = self._pending.get(key_id)
        if change is None:
            change = self._pending[key_id] = ReputationChange(key_id)
        return change

    def unban(self, key_id: str) -> Reputation:
        """Lift a ban and start the record afresh (old tickets would ban it again at once)."""
        with self._writing:
            fresh = Reputation(key_id)
            with self._lock:
                self._reputations[key_id] = fresh
                self._pending.pop(key_id, None)
                snapshot = replace(fresh)
            self._records.save(snapshot)
        return snapshot

    def banned(self) -> list[Reputation]:
        """Every key under a ban now (pending changes are written first)."""
        self.flush()
        return [Reputation.of(record) for record in self._records.banned()]

    def owner_of(self, scout_id: str) -> str | None:
        """The key a scout id belongs to; None for an id never seen."""
        return self._records.owner_of(scout_id)

    def scout_ids_of(self, key_id: str) -> list[str]:
        return self._records.scout_ids_of(key_id)

    # -- the event loop: memory only -----------------------------------------------------------

    def known(self, key_id: str) -> Reputation | None:
        """A copy of the key's cached reputation (every connected scout's key is cached)."""
        with self._lock:
            cached = self._reputations.get(key_id)
            return None if cached is None else replace(cached)

    def record_drafts(self, key_id: str, verified: int, accepted: int) -> None:
        with self._lock:
            reputation = self._reputations.get(key_id)
            if reputation is None:  # cached by the scout's handshake, so never in practice
                log.warning("draft outcome for key %s, whose reputation is not loaded", key_id)
                return
            change = ReputationChange(key_id, draft_tokens=verified, accepted_tokens=accepted)
            _apply(reputation, change)
            self._pending_for(key_id).add(change)
            if accepted:
                self._credits[key_id] = self._credits.get(key_id, 0) + accepted

    def record_ticket(self, key_id: str, score: float) -> str | None:
        """Count a golden ticket; the ban's reason when this ticket gets the key banned.
        Written by the next flush."""
        now = datetime.now(UTC)
        with self._lock:
            reputation = self._reputations.get(key_id)
            if reputation is None:  # cached by the scout's handshake, so never in practice
                log.warning("golden ticket for key %s, whose reputation is not loaded", key_id)
                return None
            change = ReputationChange(key_id, tickets=1, ticket_score_sum=score)
            _apply(reputation, change)
            pending = self._pending_for(key_id)
            pending.add(change)
            if reputation.banned(now) or not self.policy.should_ban(reputation):
                return None
            seconds = self.policy.ban_seconds
            until = now + timedelta(seconds=seconds) if seconds else None
            reason = (
                f"reputation {reputation.score:.2f} below {self.policy.threshold} after "
                f"{reputation.tickets} golden tickets"
            )
            pending.ban = (now, until, reason)
            reputation.banned_at, reputation.banned_until, reputation.ban_reason = pending.ban
            return reason


def _apply(reputation: Reputation, change: ReputationChange) -> None:
    reputation.tickets += change.tickets
    reputation.ticket_score_sum += change.ticket_score_sum
    reputation.draft_tokens += change.draft_tokens
    reputation.accepted_tokens += change.accepted_tokens
    if change.ban is not None:
        reputation.banned_at, reputation.banned_until, reputation.ban_reason = change.ban
