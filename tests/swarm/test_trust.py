"""Trust's figures reach the store: batched each second, a ban at once, everything at stop;
nothing lost when the event loop and worker threads use it together or a write fails."""

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

from shard.engine.types import DraftOutcome
from shard.store.api_keys import KeyStore
from shard.store.database import Database
from shard.store.scout_records import ContributionStore, ReputationRecord, ScoutRecordStore
from shard.swarm.reputation import BanPolicy
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

    def save(self, reputation: ReputationRecord) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        super().save(reputation)


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
