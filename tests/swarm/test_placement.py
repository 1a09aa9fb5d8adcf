"""Where the scout runs: beside its oracle it takes one thread at idle priority and says what
to do; elsewhere all cores."""

import socket

import pytest

from shard.config import ScoutSettings
from shard.swarm import scout
from shard.swarm.placement import on_this_machine, place


def test_the_oracle_on_this_machine_is_recognised() -> None:
    assert on_this_machine("http://127.0.0.1:8000")
    assert on_this_machine("http://localhost:8000/v1")
    assert on_this_machine("[::1]:8000")
    assert on_this_machine(f"http://{socket.gethostname()}:8000")
    assert not on_this_machine("https://oracle.example.org")
    assert not on_this_machine("http://10.1.2.3:8000")


def test_a_remote_oracle_gets_all_cores_and_no_advice() -> None:
    remote = place("https://oracle.example.org", 0, 8)
    assert (remote.threads, remote.idle_priority, remote.advice) == (8, False, None)
    assert place("https://oracle.example.org", 3, 8).threads == 3


def test_a_small_machine_shared_with_the_oracle_is_said_so_with_what_to_do() -> None:
    shared = place("http://127.0.0.1:8000", 0, 2)
    assert shared.too_small
    assert shared.advice is not None
    assert "has 2 cores: too few for an oracle and a scout" in shared.advice
    assert "taskset -c 0 shard oracle --threads 1" in shared.advice
    assert "taskset -c 1 shard scout --threads 1" in shared.advice
    assert "`--threads 1` starts it here anyway" in shared.advice
    told = place("http://127.0.0.1:8000", 1, 2)
    assert not told.too_small and (told.threads, told.idle_priority) == (1, False)


def test_a_bigger_machine_shared_with_the_oracle_gets_one_idle_thread() -> None:
    shared = place("http://127.0.0.1:8000", 0, 8)
    assert not shared.too_small
    assert (shared.threads, shared.idle_priority) == (1, True)
    assert shared.advice is not None and "--threads 7" in shared.advice


def test_threads_given_by_hand_are_kept_at_normal_priority() -> None:
    chosen = place("http://127.0.0.1:8000", 2, 16)
    assert (chosen.threads, chosen.idle_priority) == (2, False)
    assert chosen.advice is not None and "--threads 14" in chosen.advice


def test_shard_scout_beside_its_oracle_on_two_cores_says_so_and_does_not_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(scout.os, "cpu_count", lambda: 2)
    settings = ScoutSettings(oracle="http://127.0.0.1:9", key="sk-oracle-" + "k" * 40)
    with pytest.raises(SystemExit) as ended:
        scout.run_scout(settings)
    assert ended.value.code == 2
    assert "not starting" in caplog.text and "taskset -c 1 shard scout" in caplog.text
