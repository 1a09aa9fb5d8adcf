"""The hub's memory of scout keys: identity, reputation, bans and contribution credit.

Kept in the store (docs/architecture.md, invariant 6) so none of it is shed by a restart or by
reconnecting under a new scout id. Live counters are cached here and written in batches.

Two kinds of caller, two kinds of method:
- the event loop records drafts and tickets and reads cached reputations: memory only, never
  the store;
- worker threads (`asyncio.to_thread`) do the store work: the handshake's refusal, flushing,
  bans and unbans, owner lookups.

`_lock` guards the caches for both and is never held across a store call; `_writing` keeps
writes in the order their snapshots were taken, so an older snapshot never lands last.
"""

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shard.store.scout_records import ContributionStore, ScoutRecordStore
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
        self._credits: dict[str, int] = {}
        self._dirty: set[str] = set()

    # -- store work: call these from a worker thread ----------------------------------------

    def refusal(self, scout_id: str, key_id: str) -> tuple[int, str] | None:
        """Why a scout may not join (its id is another key's, or its key is banned). Caches
        the key's reputation, so the event loop finds it there from now on."""
        owner = self._records.claim(scout_id, key_id)
        if owner != key_id:
            return CLOSE_PROTOCOL_ERROR, f"scout id {scout_id} belongs to another key"
        reputation = self._load(key_id)
        if reputation.banned(datetime.now(UTC)):
            until = (
                f"until {reputation.banned_until.isoformat(timespec='seconds')}"
                if reputation.banned_until
                else "for good"
            )
            return CLOSE_BANNED, f"banned {until}: {reputation.ban_reason}"
        return None

    def _load(self, key_id: str) -> Reputation:
        with self._lock:
            cached = self._reputations.get(key_id)
            if cached is not None:
                return replace(cached)
        stored = Reputation.of(self._records.reputation(key_id))
        with self._lock:  # the loop may have cached it meanwhile; the cache wins
            return replace(self._reputations.setdefault(key_id, stored))

    def flush(self) -> None:
        """Write changed reputations and contribution credit; what fails is kept for later."""
        with self._writing:
            with self._lock:
                dirty = [replace(self._reputations[key_id]) for key_id in self._dirty]
                self._dirty.clear()
                credits, self._credits = self._credits, {}
            try:
                while dirty:
                    self._records.save(dirty[-1])
                    dirty.pop()
                while credits:
                    key_id, tokens = next(iter(credits.items()))
                    self._contributions.add(key_id, tokens)
                    del credits[key_id]
            finally:
                if dirty or credits:
                    with self._lock:
                        self._dirty.update(reputation.key_id for reputation in dirty)
                        for key_id, tokens in credits.items():
                            self._credits[key_id] = self._credits.get(key_id, 0) + tokens

    def unban(self, key_id: str) -> Reputation:
        """Lift a ban and start the record afresh (old tickets would ban it again at once)."""
        with self._writing:
            fresh = Reputation(key_id)
            with self._lock:
                self._reputations[key_id] = fresh
                self._dirty.discard(key_id)
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
            reputation.draft_tokens += verified
            reputation.accepted_tokens += accepted
            self._dirty.add(key_id)
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
            reputation.tickets += 1
            reputation.ticket_score_sum += score
            self._dirty.add(key_id)
            if reputation.banned(now) or not self.policy.should_ban(reputation):
                return None
            seconds = self.policy.ban_seconds
            reputation.banned_at = now
            reputation.banned_until = now + timedelta(seconds=seconds) if seconds else None
            reputation.ban_reason = (
                f"reputation {reputation.score:.2f} below {self.policy.threshold} after "
                f"{reputation.tickets} golden tickets"
            )
            return reputation.ban_reason
