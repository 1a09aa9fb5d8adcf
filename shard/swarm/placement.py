"""Where a scout runs relative to its oracle, and what follows for its threads.

A scout speeds the oracle up with compute of its own. Beside the oracle on one machine it can
only use what the oracle leaves idle: llama.cpp's threads spin while they wait, so two sets of
them on the same cores slow each other far more than either works. So a scout that finds its
oracle on the same machine takes one thread at low priority (unless told otherwise) and says
what to do to gain from it.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SMALL_MACHINE_CORES = 2
"""At most this many cores: too few for an oracle and a scout to both run at full speed."""
SHARED_MACHINE_NICENESS = 10
"""How much a scout beside its oracle lowers its priority, so the oracle's threads win."""


@dataclass(frozen=True)
class Placement:
    threads: int
    niceness: int
    advice: str | None
    """What the scout logs at start, when there is something to say."""


def on_this_machine(oracle: str) -> bool:
    """Whether the oracle's URL points at this machine (a loopback address or its own name)."""
    host = urlsplit(oracle if "://" in oracle else f"http://{oracle}").hostname or ""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def place(oracle: str, threads: int, cores: int) -> Placement:
    """The scout's threads (0 asks for a default), priority and start-up advice."""
    if not on_this_machine(oracle):
        return Placement(threads or cores, 0, None)
    chosen = threads or 1
    niceness = SHARED_MACHINE_NICENESS if not threads else 0
    split = (
        f"split the cores: `taskset -c 0 shard oracle --threads {max(1, cores - 1)}` and "
        f"`taskset -c {cores - 1} shard scout --threads 1`"
    )
    if cores <= SMALL_MACHINE_CORES:
        advice = (
            f"the oracle at {oracle} runs on this machine, which has {cores} cores: too few "
            "for an oracle and a scout to both run at full speed. This scout drafts with "
            f"{chosen} thread(s){' at low priority' if niceness else ''}, with what the "
            "oracle leaves idle, so expect little speedup. To gain from a scout, run it on "
            f"another machine, or {split}."
        )
    else:
        advice = (
            f"the oracle at {oracle} runs on this machine: this scout drafts with {chosen} "
            f"thread(s){' at low priority' if niceness else ''}. Give the oracle "
            f"`--threads {cores - chosen}` so that they do not share cores, or run the scout "
            "on another machine."
        )
    return Placement(chosen, niceness, advice)
