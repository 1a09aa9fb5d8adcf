"""A request inside the engine (`Task`) and each of its choices (`Choice`), one KV stream each.

A choice holds only what decoding needs: where it is in its KV stream, its tokens, its
sampling counts and its text. Proposers keep their own per-sequence state under `key`.
"""

import secrets
from collections import Counter
from dataclasses import dataclass, field

from shard.engine.constraint import TokenConstraint
from shard.engine.spec.prediction import PredictionAlignment
from shard.engine.spec.proposers import NO_PROPOSAL, Proposal, Proposer
from shard.engine.text_stream import TextStream
from shard.engine.types import GenerationRequest, Rejected, TokenLogprob


@dataclass
class StepDraft:
    """The draft a choice verifies this step: the winning proposal and the tokens decoded
    after its next token (the proposal's first `k`, then padding)."""

    proposer: Proposer | None = None
    proposal: Proposal = NO_PROPOSAL
    tokens: list[int] = field(default_factory=list)
    others: list[tuple[Proposer, Proposal]] = field(default_factory=list)
    """The offers that lost, scored for free once the step has decided."""
    required: int = 0
    """Tokens decoded whatever k: a filler where one row would be a graph run of its own."""

    @property
    def decoded_from_proposal(self) -> int:
        """How many of `tokens` are the proposal's own; the rest pad the batch."""
        return min(len(self.proposal.tokens), len(self.tokens))


@dataclass(eq=False)
class Choice:
    """One sequence: a choice of a request, decoding in its own KV stream.

    `position` is where `next_token` (sampled, not yet decoded) goes; `tokens` holds the
    prompt and every sampled token, `next_token` included.
    """

    index: int
    seq_id: int
    text: TextStream
    key: str = field(default_factory=lambda: secrets.token_hex(8))
    tokens: list[int] = field(default_factory=list)
    position: int = 0
    next_token: int | None = None
    generated: int = 0
    counts: Counter[int] = field(default_factory=Counter)
    batch_indices: list[int] = field(default_factory=list)
    finished: bool = False
    draft: StepDraft = field(default_factory=StepDraft)
    reported: int = 0
    """How many of `tokens` the progress feed has been told about."""
    constraint: TokenConstraint | None = None
    """Structured output: where the choice is in the request's grammar."""
    alignment: PredictionAlignment | None = None
    """Where the output stands in the request's predicted output, if it has one."""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """Each sampled token's logprob, when asked for; sent as the token's text is."""
    logprobs_sent: int = 0

    def take_logprobs(self, ended: bool) -> tuple[TokenLogprob, ...]:
        """The logprobs not yet sent of tokens whose text is out: all of them when the choice
        ends other than on a stop string, none of a token the stop string holds or follows."""
        every = ended and not self.text.stopped
        upto = len(self.logprobs) if every else self.text.tokens_released
        taken = tuple(self.logprobs[self.logprobs_sent : upto])
        self.logprobs_sent = upto  # tokens_released only grows
        return taken


@dataclass(eq=False)
class Task:
    """A request inside the engine: its prompt, how much of it is cached, its choices."""

    request: GenerationRequest
    prompt: list[int]
    max_new: int
    choices: list[Choice] = field(default_factory=list)
    prefilled: int = 0
    logits_index: int = -1
    prompt_rows: list[tuple[int, int]] = field(default_factory=list)
    """This step's (prompt position, batch index) whose logits give the next prompt token's
    logprob, for a request that wants prompt logprobs."""
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    constraint: TokenConstraint | None = None
    """The request's grammar at its start; each choice follows a copy."""
    prediction: list[int] = field(default_factory=list)
    failure: Rejected | None = None
    """Why the request must end now, mid-generation (its grammar reached a dead end)."""

    @property
    def lead(self) -> Choice:
        return self.choices[0]

    @property
    def wants_prompt_logprobs(self) -> bool:
        return self.request.prompt_logprobs is not None

    @property
    def prompt_cached(self) -> bool:
        return self.prefilled == len(self.prompt)

    def draft_room(self, choice: Choice, n_ctx: int) -> int:
        """Draft tokens that still fit the choice's context and its max_tokens."""
        return min(n_ctx - 1 - choice.position, self.max_new - choice.generated - 1)
