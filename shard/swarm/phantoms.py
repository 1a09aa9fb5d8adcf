"""Phantom sequences: golden tickets that look like live work.

A phantom replays one of the oracle's own greedy completions (from the ticket book, each used
once) to one scout as if it were a user's sequence being decoded. The dispatch sends it as it
sends live work, through the same code: a first work frame with the prompt and the first
token, then the tokens decided since, at the oracle's own step pace (`StepPace`, measured from
live steps), a frame only once the last was answered or missed its deadline, and a cancel at
the end. So a scout cannot tell a phantom from a user's sequence by its framing or timing, and
its content is text the oracle wrote from an instruction no scout sees.

Each phantom step does what an engine step does with the scout's latest draft
(`PhantomReplay.step`): the part still ahead of the sequence is checked against the known
continuation, at most `--draft-max` tokens of it, and the sequence advances by what matched
plus one token. Each step that had tokens ahead is a golden ticket: 1 when the first token
offered is the one decided, else 0. Its mean is then the scout's per-token acceptance, whatever
its draft length and speed (an honest small drafter at 60% scores 0.6, where scoring the
matched share of a long draft would score it near 0.2 and ban it); a scout that offers nothing
ahead for a whole deadline (silent, answering only with what it was already sent, or empty)
scores 0 for that deadline. A draft is an offer when it arrives with tokens ahead, even if the
phantom passes them before its next step. A draft overtaken by the phantom before it arrived is
scored on its token at the first position the scout was never sent (1 and an offer when right,
else 0): a scout no faster than the oracle is overtaken at every step, yet shows it drafts
honestly, where one that only copies what it was told (or sends nothing) cannot. Pure: the
dispatch owns the clock and the wire.
"""

from dataclasses import dataclass, field

from shard.swarm.golden_tickets import Completion

DEFAULT_STEP_S = 0.05
"""The pace before any live step was seen."""
START_DELAY_S = 2.0
"""A phantom starts at a random time up to this long after the live sequence that chose it."""
_IDLE_GAP_S = 1.0
"""A longer gap between steps is the engine idling, not its pace."""
_SMOOTHING = 0.2


class StepPace:
    """How long the engine's steps take lately, from the times its progress arrived."""

    def __init__(self) -> None:
        self.seconds = DEFAULT_STEP_S
        self._last: float | None = None

    def step_seen(self, now: float) -> None:
        if self._last is not None and 0 < now - self._last < _IDLE_GAP_S:
            self.seconds += _SMOOTHING * (now - self._last - self.seconds)
        self._last = now


@dataclass(frozen=True)
class PhantomStep:
    new_tokens: tuple[int, ...]
    """What the phantom decided this step (the accepted draft tokens and one more)."""
    score: float | None
    """This step's golden-ticket score; None when it is not scored."""
    done: bool


@dataclass
class PhantomReplay:
    """One completion replayed as a sequence; positions count from the prompt's start."""

    completion: Completion
    started_at: float
    decided: int = 1
    """Continuation tokens decided so far (the first is decided before the first frame)."""
    offered_at: float = field(init=False)
    """When draft tokens were last ahead: found by a step, or new when they arrived (or when
    the phantom started)."""

    predicted_at: int = field(init=False, default=0)
    """The last position whose overtaken prediction was scored."""

    def __post_init__(self) -> None:
        self.offered_at = self.started_at

    @property
    def tokens(self) -> list[int]:
        """The sequence as the scout has been told it so far."""
        return list(self.completion.prompt + self.completion.continuation[: self.decided])

    def step(
        self,
        answer: tuple[int, tuple[int, ...]] | None,
        per_step: int,
        now: float,
        deadline_s: float,
    ) -> PhantomStep:
        """Verify what the scout's latest answer (position, tokens) has ahead, advance, and
        score: whether its first token ahead was right, or 0 after a deadline with none."""
        ahead = self._ahead(answer)[:per_step]
        continuation = self.completion.continuation
        accepted = 0
        for drafted, decided in zip(ahead, continuation[self.decided :], strict=False):
            if drafted != decided:
                break
            accepted += 1
        score: float | None = None
        if ahead:
            score = 1.0 if accepted else 0.0
            self.offered_at = now
        elif now - self.offered_at >= deadline_s:
            score = 0.0
            self.offered_at = now
        before = self.decided
        self.decided = min(self.decided + accepted + 1, len(continuation))
        return PhantomStep(
            continuation[before : self.decided], score, self.decided >= len(continuation)
        )

    def arrived(self, answer: tuple[int, tuple[int, ...]], told: int, now: float) -> float | None:
        """A draft arrived, when the scout had been sent the sequence's first `told` tokens.
        With tokens ahead it is an offer, scored at the next step. Overtaken (the phantom
        decided the token at `told` since), its token there, which no frame showed the
        scout, is a prediction scored now: 1 and an offer when right, else 0. A scout no
        faster than the oracle is overtaken so at every step; it must not score 0 for a
        deadline in which it kept drafting, and one that holds back its unsure tokens until
        they are overtaken is scored on them all the same. An echo of what it was sent
        predicts nothing; each position is scored once."""
        if self._ahead(answer):
            self.offered_at = now
            return None
        position, drafted = answer
        prompt, continuation = len(self.completion.prompt), self.completion.continuation
        if told <= self.predicted_at or not prompt <= position <= told < position + len(drafted):
            return None
        if told - prompt >= self.decided:
            return None  # not overtaken: a wrong token ahead is scored at the step
        if drafted[: told - position] != continuation[position - prompt : told - prompt]:
            return None  # it went another way before: no prediction of this position
        self.predicted_at = told
        if drafted[told - position] != continuation[told - prompt]:
            return 0.0
        self.offered_at = now
        return 1.0

    def _ahead(self, answer: tuple[int, tuple[int, ...]] | None) -> tuple[int, ...]:
        """The answer's tokens past what is decided, if what it drafted before them is what
        was decided (else none: the draft went another way)."""
        if answer is None:
            return ()
        position, drafted = answer
        start = position - len(self.completion.prompt)  # drafts start after the prompt
        if start < 0 or start > self.decided:
            return ()
        if drafted[: self.decided - start] != self.completion.continuation[start : self.decided]:
            return ()
        return drafted[self.decided - start :]
