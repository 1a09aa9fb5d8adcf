"""Engine-side request and event types, kept apart from the HTTP protocol models."""

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class PastToolCall:
    """A call an earlier assistant turn made, for a template that writes calls itself."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    """One message after the API layer has flattened its content to plain text. The tool
    fields are set only for a template that renders tools (`EngineStatus.template_renders_tools`);
    otherwise the API has written calls and results into `content`."""

    role: str
    content: str
    tool_calls: tuple[PastToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token; `seed` is always set (the oracle draws one when the user did not)."""

    seed: int
    temperature: float = 0.7
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class OutputGrammar:
    """A grammar every choice's output must follow (llguidance's format, see
    shard.engine.constraint), and the request field it came from, named if it cannot run."""

    grammar: str
    param: str


@dataclass(frozen=True)
class GenerationRequest:
    """What the engine needs to run one completion with `n` choices."""

    request_id: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    max_tokens: int = 500
    shrink_to_fit: bool = False
    """True when max_tokens was the default: it shrinks to what the context has left, where
    a value the client chose that does not fit is refused (as vLLM and OpenAI do)."""
    stop: tuple[str, ...] = ()
    n: int = 1
    raw_prompt: str | None = None
    """Legacy completions: text to continue as it is, instead of rendering `messages`."""
    prompt_ids: tuple[int, ...] | None = None
    """Legacy completions: token ids to continue as they are (no BOS added)."""
    owner: str | None = None
    """The API key's id: its reserved scouts draft for this request first."""
    token_ids: bool = False
    """Report prompt and completion token ids (golden tickets need them)."""
    grammar: OutputGrammar | None = None
    """Structured output: tokens the grammar forbids are never sampled."""
    prediction: str | None = None
    """Predicted Outputs: text the answer is expected to repeat, a draft source."""
    tools: str | None = None
    """The OpenAI `tools` list as JSON, for a chat template that renders tools itself; None
    when there are none to offer or the API wrote them into the messages."""
    prompt_logprobs: int | None = None
    """Legacy `echo` with `logprobs`: each prompt token's logprob (after the first, which
    has none), with this many alternatives. Such a prompt is decoded whole, not taken from
    the prefix cache, whose tokens' logits are gone."""
    shown_to_scouts: bool = True
    """False for text scouts must never see being written (golden tickets' text): its
    tokens are left off the progress feed, so no scout drafts for it."""


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one token under the model, with its strongest alternatives."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True)
class Admitted:
    """The prompt fitted; generation is queued."""

    prompt_tokens: int
    prompt_ids: tuple[int, ...] = ()
    prompt_text: str = ""
    """A prompt given as token ids, as text (its tokens' pieces), for `echo`."""


@dataclass(frozen=True)
class PromptCached:
    """The request started; this many of its prompt tokens came from the prefix cache."""

    tokens: int


@dataclass(frozen=True)
class PromptLogprobs:
    """The prompt is decoded: its first token, and the logprob of each one after it given
    those before (sent before the first delta, when the request asked for them)."""

    first_token: bytes
    logprobs: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class Rejected:
    """The engine refused the request before generating anything."""

    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class ChoiceDelta:
    """New output for one choice: text released so far, tokens made, and maybe the end."""

    index: int
    text: str
    completion_tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class PredictionUsed:
    """At a choice's end: its prediction tokens that appeared in its output, in order, and
    those that did not (whatever drafts were verified, so the same with and without)."""

    index: int
    accepted: int
    rejected: int


EngineEvent = Admitted | PromptCached | PromptLogprobs | Rejected | ChoiceDelta | PredictionUsed


DraftSource = Literal["ngram", "scout", "prediction"]
NGRAM: DraftSource = "ngram"
SCOUT: DraftSource = "scout"
PREDICTION: DraftSource = "prediction"


@dataclass(frozen=True)
class ScoutDraft:
    """Draft tokens a scout proposed for positions start, start + 1, ... of a sequence."""

    scout_id: str
    start: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class SequenceUpdate:
    """Engine to swarm: a sequence's new tokens (from `start`), or its end."""

    sequence_key: str
    owner: str | None
    start: int
    tokens: tuple[int, ...]
    ended: bool = False


@dataclass(frozen=True)
class DraftOutcome:
    """Engine to swarm and metrics: how many of a source's draft tokens were accepted."""

    source: DraftSource
    scout_id: str | None
    proposed: int
    accepted: int
    timely: bool = True
    """The tokens were ahead of the sequence when a step was planned. Late ones (decided
    before any step saw them) may only count against a scout, never earn it credit."""


Progress = SequenceUpdate | DraftOutcome
"""What the engine reports after each step to whoever follows its progress."""


@dataclass(frozen=True)
class Device:
    """A device llama.cpp can compute on."""

    name: str
    description: str
    kind: str
    """cpu, gpu, igpu (integrated) or accel, as ggml classes it."""


@dataclass(frozen=True)
class EngineStatus:
    """What the rest of the oracle may know about the loaded engine (read-only)."""

    n_vocab: int
    n_ctx: int
    n_seq: int
    draft_max: int
    tokenizer_fingerprint: str
    chat_template: str
    drafts_exact: bool = True
    """Whether verifying drafts in one batch gives the logits of one-at-a-time decoding, bit
    for bit, for this model on this build (measured at start)."""
    single_rows_padded: bool = False
    """Whether every decode is given two rows with logits, because this build computes one row
    with another kernel than several; `drafts_exact` is then measured with the padding."""
    prefix_cache_tokens: int = 0
    """Most prompt tokens the prefix cache keeps; 0: the cache is off."""
    backend: str = "CPU"
    """What computes: CPU, or the GPU backend's name (CUDA, Metal, Vulkan, ...)."""
    devices: tuple[Device, ...] = ()
    gpu_layers: int = 0
    """Layers llama.cpp put on a GPU."""
    template_renders_tools: bool = False
    """The chat template is Jinja that takes `tools`: the API hands it tools and calls as they
    are instead of writing them into messages in Shard's generic format."""
