"""Where a scout runs relative to its oracle, and what follows for its threads.

A scout speeds the oracle up with compute of its own. Beside the oracle on one machine it can
only use what the oracle leaves idle: llama.cpp's threads spin while they wait, so two sets of
them on the same cores slow each other far more than either works. So a scout that finds its
oracle on the same machine takes one thread at idle priority (unless told otherwise) and says
what to do to gain from it.
"""

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SMALL_MACHINE_CORES = 2
"""At most this many cores: too few for an oracle and a scout to both run at full speed."""


@dataclass(frozen=True)
class Placement:
    threads: int
    idle_priority: bool
    """Run only on CPU time nothing else wants (`yield_to_the_oracle`)."""
    advice: str | None
    too_small: bool = False
    """Beside its oracle on a machine too small for both, with no --threads given: the scout
    says so and what to do, and does not start."""
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
        return Placement(threads or cores, False, None)
    chosen = threads or 1
    idle = not threads
    split = (
        f"split the cores: `taskset -c 0 shard oracle --threads {max(1, cores - 1)}` and "
        f"`taskset -c {cores - 1} shard scout --threads 1`"
    )
    if cores <= SMALL_MACHINE_CORES:
        advice = (
            f"the oracle at {oracle} runs on this machine, which has {cores} cores: too few "
            "for an oracle and a scout. A scout drafting here takes the cores the oracle "
            "decodes on, and llama.cpp's threads slow each other far more than either works "
            "(the oracle fell to a tenth of its speed when tried). To gain from a scout, run "
            f"it on another machine, or {split}; `--threads 1` starts it here anyway."
        )
        if not threads:
            return Placement(chosen, idle, advice, too_small=True)
    else:
        advice = (
            f"the oracle at {oracle} runs on this machine: this scout drafts with {chosen} "
            f"thread(s){' at idle priority' if idle else ''}. Give the oracle "
            f"`--threads {cores - chosen}` so that they do not share cores, or run the scout "
            "on another machine."
        )
    return Placement(chosen, idle, advice)


def yield_to_the_oracle() -> None:
    """Run this process (and the threads it starts from now on) only on CPU time no other
    process wants: Linux's SCHED_IDLE, else the lowest niceness. A lower niceness alone is not
    enough: each time the scout takes a core from one of the oracle's llama.cpp threads, the
    others spin at their barrier until it is back."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
