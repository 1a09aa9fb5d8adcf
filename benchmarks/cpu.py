"""Notice other work on the CPU, because it ruins llama.cpp timings.

llama.cpp's OpenMP threads spin while they wait for each other; with another busy process on
the same cores a decode step can take a hundred times longer. The benchmark waits for an idle
machine before each server and records how much CPU went to other processes while measuring.
"""

import os
import sys
import time
from pathlib import Path


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks summed over all cores since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_ticks(pid: int) -> int:
    """User + system ticks of one process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def busy_cpu_fraction(interval_s: float = 1.0) -> float | None:
    """Share of all cores' time spent busy over a short interval; None off Linux."""
    try:
        busy_before, total_before = _machine_ticks()
        time.sleep(interval_s)
        busy_after, total_after = _machine_ticks()
    except (OSError, ValueError, IndexError):
        return None
    return (busy_after - busy_before) / max(1, total_after - total_before)


def wait_for_idle(timeout_s: float, threshold: float = 0.15) -> float | None:
    """Wait, up to a limit, until other work leaves the CPU; return the last busy share. With
    no time to wait (smoke runs) a quarter-second look is enough for the record."""
    deadline = time.monotonic() + timeout_s
    busy = busy_cpu_fraction(1.0 if timeout_s > 0 else 0.25)
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        print(f"CPU {busy:.0%} busy with other work; waiting for it to settle", flush=True)
        busy = busy_cpu_fraction(5.0)
    if busy is not None and busy > threshold:
        print(f"warning: starting with the CPU {busy:.0%} busy", file=sys.stderr, flush=True)
    return busy


class OtherLoadMeter:
    """CPU share used by processes other than ours (the server, its scouts and this
    benchmark) over a span."""

    def __init__(self, *pids: int) -> None:
        self._pids = (*pids, os.getpid())
        self._start: tuple[int, int, dict[int, int]] | None = None

    def _sample(self) -> tuple[int, int, dict[int, int]]:
        busy, total = _machine_ticks()
        ours: dict[int, int] = {}
        for pid in self._pids:
            try:
                ours[pid] = _process_ticks(pid)
            except (OSError, ValueError, IndexError):
                continue  # gone (a scout that quit): its share counts as other work
        return busy, total, ours

    def start(self) -> None:
        """Begin the span."""
        try:
            self._start = self._sample()
        except (OSError, ValueError, IndexError):
            self._start = None

    def stop(self) -> float | None:
        """End the span: the share of all cores other processes kept busy, or None."""
        if self._start is None:
            return None
        try:
            busy, total, ours = self._sample()
        except (OSError, ValueError, IndexError):
            return None
        busy_0, total_0, ours_0 = self._start
        ours_used = sum(ticks - ours_0[pid] for pid, ticks in ours.items() if pid in ours_0)
        other = (busy - busy_0) - ours_used
        return max(0.0, other / max(1, total - total_0))
