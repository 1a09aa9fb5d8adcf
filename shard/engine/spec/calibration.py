"""Decode timings measured at start, kept on disk so a restart of the same model on the same
machine and settings does not spend seconds measuring them again.

The figures only steer draft length (never output), and every step keeps refining them, so
a slightly stale table costs little; one older than `max_age_s` is measured afresh.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

log = logging.getLogger(__name__)

_MAX_ENTRIES = 32


@dataclass(frozen=True)
class CalibrationCache:
    path: Path
    max_age_s: float = 7 * 24 * 3600

    def load(self, key: str) -> dict[int, float] | None:
        entry = self._entries().get(key)
        if entry is None or time.time() - entry[0] > self.max_age_s:
            return None
        return entry[1]

    def save(self, key: str, seconds: dict[int, float]) -> None:
        """Best effort: a cache that cannot be written is only a slower next start."""
        entries = self._entries()
        entries[key] = (time.time(), seconds)
        newest = sorted(entries.items(), key=lambda item: item[1][0])[-_MAX_ENTRIES:]
        document = {k: {"at": at, "seconds": timings} for k, (at, timings) in newest}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(document))
            temporary.replace(self.path)
        except OSError as error:
            log.warning("could not save decode timings to %s: %s", self.path, error)

    def _entries(self) -> dict[str, tuple[float, dict[int, float]]]:
        """Every readable entry: key to (when measured, seconds by decode size)."""
        try:
            document = json.loads(self.path.read_text())
            return {
                key: (
                    float(entry["at"]),
                    {int(size): float(sec) for size, sec in entry["seconds"].items()},
                )
                for key, entry in document.items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}


def calibration_key(model_path: Path, *settings: object) -> str:
    """Same model file (by size and time), same settings, same machine and llama.cpp.

    The context's size and sequence count are not part of it: calibration decodes one
    sequence from an empty cache, and with one KV stream per sequence attention runs over
    that stream's used cells only, so they do not change what is measured."""
    try:
        stat = model_path.stat()
        identity: tuple[object, ...] = (str(model_path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        identity = (str(model_path),)
    machine = (os.uname().nodename, os.cpu_count(), llama_cpp.__version__)
    text = json.dumps([*identity, *machine, *settings], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
