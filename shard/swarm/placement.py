"""Where a scout runs relative to its oracle, and what follows for its threads.

A scout speeds the oracle up with compute of its own. Beside the oracle on one machine it can
only use cores the oracle leaves free: llama.cpp's threads wait for each other at every step,
so a core taken from one of them slows all of them far more than the scout gains. Measured on
2 cores, an oracle on both fell to 0.13x of its speed beside a one-thread scout even at idle
priority (Linux SCHED_IDLE), and to 0.03x beside a busy loop at idle priority. So a scout on
its oracle's machine tells the oracle how many threads it drafts with (`local_threads` in
hello), and an oracle on its default thread count decodes with that many fewer while it is
connected. That costs the oracle a core, so by default the scout starts there only where the
oracle keeps 0.9x of its speed without it, and otherwise says what to do.
"""

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MIN_SHARED_CORES = 10
"""Fewest cores on which an oracle that cedes one to a scout keeps 0.9x its speed, if its
decoding scales with threads (measured here: 1 thread decoded 0.57x as fast as 2)."""


@dataclass(frozen=True)
class Placement:
    threads: int
    local: bool
    """Beside its oracle: the scout tells it its threads, to be left a core of their own."""
    idle_priority: bool
    """Run only on CPU time nothing else wants (`yield_to_the_oracle`)."""
    advice: str | None
    """What the scout logs at start, when there is something to say."""
    too_small: bool = False
    """Beside its oracle on a machine too small to spare a core, with no --threads given: the
    scout says so and what to do, and does not start."""


def on_this_machine(oracle: str) -> bool:
    """Whether the oracle's URL points at this machine (a loopback address or its own name)."""
    return is_this_host(urlsplit(oracle if "://" in oracle else f"http://{oracle}").hostname)


def is_this_host(host: str | None) -> bool:
    """Whether a host name or address is this machine's: a loopback address or its name."""
    if not host:
        return False
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 peer of a server listening on `::`
    return address.is_loopback


def place(oracle: str, threads: int, cores: int, idle_priority: bool = False) -> Placement:
    """The scout's threads (0 asks for a default), priority and start-up advice."""
    if not on_this_machine(oracle):
        return Placement(threads or cores, False, idle_priority, None)
    chosen = threads or 1
    ceding = (
        f"An oracle on its default thread count decodes with {chosen} thread(s) fewer while "
        f"this scout is connected, so that they do not share cores (one whose --threads was "
        f"given does not: give it at most {max(1, cores - chosen)})."
    )
    if cores < MIN_SHARED_CORES and not threads:
        advice = (
            f"the oracle at {oracle} runs on this machine, which has {cores} cores: too few "
            "to spare one for a scout. A scout drafting on the oracle's cores slows it far "
            "more than it drafts (the oracle fell to a tenth of its speed when tried), and "
            "giving it a core of its own costs the oracle more than a tenth of its speed. To "
            "gain from a scout, run it on another machine with a model smaller than the "
            f"oracle's; `--threads 1` starts it here anyway. {ceding}"
        )
        return Placement(chosen, True, idle_priority, advice, too_small=True)
    advice = (
        f"the oracle at {oracle} runs on this machine: this scout drafts with {chosen} "
        f"thread(s). {ceding}"
    )
    return Placement(chosen, True, idle_priority, advice)


def yield_to_the_oracle() -> None:
    """Run this process (and the threads it starts from now on) only on CPU time no other
    process wants (`--idle-priority`): Linux's SCHED_IDLE, else the lowest niceness. For a
    scout on a machine used for other work; it does not protect an oracle on every core."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
