"""Trust's figures reach the store: batched each second, a ban at once, everything at stop;
nothing lost when the event loop and worker threads use it together or a write fails, or
when several oracles share the store."""

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shard.api.oracle_state import ScoutTier
from shard.engine.types import DraftOutcome
from shard.store.api_keys import KeyStore
from shard.store.database import Database
from shard.store.scout_records import ContributionStore, ReputationChange, ScoutRecordStore
from shard.swarm.reputation import BanPolicy, Reputation
from shard.swarm.trust import Trust
from tests.swarm.fakes import Rig, run_with_rig
from tests.swarm.test_tickets import CONTINUATION, run_answering

HOUR = timedelta(hours=1)


def test_stopping_the_hub_writes_what_is_pending(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        await rig.join("s1")
        rig.hub.on_reports([DraftOutcome("scout", "s1", proposed=40, accepted=30)])
        assert rig.records.reputation(rig.admin.id).draft_tokens == 0  # not written yet
        await rig.hub.stop()
        assert rig.records.reputation(rig.admin.id).accepted_tokens == 30
        assert rig.contributions.recent(rig.admin.id, HOUR) == 30

    run_with_rig(tmp_path, body)


def test_the_running_hub_writes_each_second_and_a_ban_at_once(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        rig.hub.start()
        link = await rig.join("s1", rig.user)
        rig.hub.on_reports([DraftOutcome("scout", "s1", proposed=4, accepted=1)])
        for _ in range(30):
            await asyncio.sleep(0.1)
            if rig.contributions.recent(rig.user.id, HOUR):
                break
        assert rig.contributions.recent(rig.user.id, HOUR) == 1

        await asyncio.sleep(0.2)  # just after a write: the ban must not wait for the next
        await run_answering(rig, link, "s1", 1, wrong=True)
        await asyncio.sleep(0.3)
        assert link.closed is not None and link.closed[0] == 4003
        stored = rig.records.reputation(rig.user.id)
        assert stored.tickets == 1 and stored.banned_at is not None

    run_with_rig(tmp_path, body, min_tickets=1)


class FlakyRecords(ScoutRecordStore):
    failures = 1

    def add(self, change: ReputationChange) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        super().add(change)


def test_a_failed_write_is_kept_for_the_next_flush(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'shard.db'}")
    _, key = KeyStore(database).create("k")
    records, contributions = FlakyRecords(database), ContributionStore(database)
    trust = Trust(records, contributions, BanPolicy())
    assert trust.refusal("s1", key.id) is None
    trust.record_drafts(key.id, 10, 7)
    try:
        trust.flush()
    except OSError:
        pass
    else:
        raise AssertionError("the write should have failed")
    trust.flush()
    assert records.reputation(key.id).accepted_tokens == 7
    assert contributions.recent(key.id, HOUR) == 7  # credited once
    database.close()


def test_the_loop_and_worker_threads_lose_no_counts(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'shard.db'}")
    _, key = KeyStore(database).create("k")
    records, contributions = ScoutRecordStore(database), ContributionStore(database)
    trust = Trust(records, contributions, BanPolicy())
    assert trust.refusal("s1", key.id) is None
    done = threading.Event()

    def flush_until_done() -> None:
        while not done.is_set():
            trust.flush()

    flusher = threading.Thread(target=flush_until_done)
    flusher.start()
    for _ in range(3000):  # as the event loop would, while the flusher writes
        trust.record_drafts(key.id, 1, 1)
    done.set()
    flusher.join()
    trust.flush()
    assert records.reputation(key.id).draft_tokens == 3000
    assert contributions.recent(key.id, HOUR) == 3000
    database.close()


def test_oracles_sharing_a_store_share_counts_bans_unbans_and_credit(tmp_path: Path) -> None:
    """Two oracles' Trust on one database: counts add up (neither writes over the other), a
    ban made through one is refused at the other's next connect and reported by its next
    flush, an unban through either lifts it on both, and credit earned through one reaches
    the scout tier on the other."""
    database = Database(f"sqlite:///{tmp_path / 'shared.db'}")
    _, key = KeyStore(database).create("k")
    policy = BanPolicy(threshold=0.5, min_tickets=2, ban_seconds=0)
    first, second = (
        Trust(ScoutRecordStore(database), ContributionStore(database), policy) for _ in (1, 2)
    )
    assert first.refusal("s1", key.id) is None and second.refusal("s2", key.id) is None
    first.record_drafts(key.id, 10, 8)
    second.record_drafts(key.id, 20, 12)
    first.flush()
    second.flush()
    first.flush()
    assert first.take_banned_elsewhere() == []
    assert first.known(key.id).accepted_tokens == 20  # type: ignore[union-attr]
    assert ScoutRecordStore(database).reputation(key.id).draft_tokens == 30
    tier = ScoutTier(min_tokens=20, window_minutes=60)
    assert tier.tier_of(key.id, ContributionStore(database)) == "scout"  # 8 here, 12 there

    first.record_ticket(key.id, 0.0)
    assert first.record_ticket(key.id, 0.0) is not None  # banned through the first
    first.flush()
    assert second.refusal("s2", key.id) is not None  # refused at the second's next connect
    assert [r.key_id for r in second.take_banned_elsewhere()] == [key.id]  # and its scouts go
    third = Trust(ScoutRecordStore(database), ContributionStore(database), policy)
    assert third.refusal("s3", key.id) is not None
    watching = Trust(ScoutRecordStore(database), ContributionStore(database), policy)
    watching._reputations[key.id] = Reputation(key.id)  # cached before the ban, as if connected
    watching.banned()  # the admin's list flushes too: what it read must still be reported
    assert [r.key_id for r in watching.take_banned_elsewhere()] == [key.id]  # hub drops scouts
    assert watching.take_banned_elsewhere() == []  # once

    second.unban(key.id)  # through the other one
    assert first.refusal("s1", key.id) is None
    first.flush()
    assert not first.known(key.id).banned(datetime.now(UTC))  # type: ignore[union-attr]
    database.close()
