"""How the hub treats scouts: deadlines, when to drop one, how many draft for a sequence."""

from dataclasses import dataclass


@dataclass(frozen=True)
class HubSettings:
    deadline_ms: int = 1000
    """How long a scout has to answer work; past it the work counts as failed."""
    max_misses: int = 8
    """Consecutive missed deadlines before a scout is dropped."""
    min_acceptance: float = 0.05
    """A scout whose drafts are accepted less often than this, once judged, is dropped."""
    judge_after_tokens: int = 64
    ping_interval_s: float = 10.0
    """Pings go out this often; a scout silent for three intervals is dropped."""
    scouts_per_request: int = 1
    golden_ticket_rate: float = 0.1
    """Share of the live sequences a scout is given that also give it a phantom sequence."""
    max_unsolicited: int = 20
    """Drafts for work never sent (flooding) tolerated before a scout is dropped."""
