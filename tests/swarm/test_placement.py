"""Where the scout runs: beside its oracle it takes one thread, which an oracle on its default
thread count cedes, and says what to do, or on a machine too small to spare a core does not
start; elsewhere all cores."""

import os
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
    assert (remote.threads, remote.local, remote.idle_priority, remote.advice) == (
        8,
        False,
        False,
        None,
    )
    assert place("https://oracle.example.org", 3, 8).threads == 3


@pytest.mark.parametrize("cores", [2, 8])
def test_a_machine_too_small_to_spare_a_core_is_said_so_with_what_to_do(cores: int) -> None:
    shared = place("http://127.0.0.1:8000", 0, cores)
    assert shared.too_small
    assert shared.advice is not None
    assert f"has {cores} cores: too few to spare one for a scout" in shared.advice
    assert "run it on another machine" in shared.advice
    assert "`--threads 1` starts it here anyway" in shared.advice
    told = place("http://127.0.0.1:8000", 1, cores)
    assert not told.too_small and (told.threads, told.local, told.idle_priority) == (
        1,
        True,
        False,
    )
    assert told.advice is not None and "decodes with 1 thread(s) fewer" in told.advice


def test_a_big_machine_shared_with_the_oracle_gets_one_thread_the_oracle_cedes() -> None:
    shared = place("http://127.0.0.1:8000", 0, 16)
    assert not shared.too_small
    assert (shared.threads, shared.local, shared.idle_priority) == (1, True, False)
    assert shared.advice is not None
    assert "decodes with 1 thread(s) fewer while this scout is connected" in shared.advice
    assert "give it at most 15" in shared.advice


def test_idle_priority_only_when_asked() -> None:
    assert place("http://127.0.0.1:8000", 2, 16, idle_priority=True).idle_priority
    assert place("https://oracle.example.org", 0, 4, idle_priority=True).idle_priority
    assert not place("http://127.0.0.1:8000", 2, 16).idle_priority


def test_shard_scout_beside_its_oracle_on_two_cores_says_so_and_does_not_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # the module scout reads
    settings = ScoutSettings(oracle="http://127.0.0.1:9", key="sk-oracle-" + "k" * 40)
    with pytest.raises(SystemExit) as ended:
        scout.run_scout(settings)
    assert ended.value.code == 2
    assert "not starting" in caplog.text and "too few to spare one" in caplog.text
