"""The engine thread: the only code that calls into llama.cpp (DESIGN.md invariant 5).

Tasks come in through a thread-safe inbox; results go out through `deliver`, once per step.
Each step puts every running choice's next token and its draft tokens, plus as much waiting
prompt as fits in `n_batch`, into ONE `llama_decode` (continuous batching, as llama.cpp's
server does). Drafts are then verified token by token against what the target samples, and
the cache is rewound past the first rejected one (speculative decoding, as in gpt-fast).
"""

import logging
import queue
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shard.engine.chat_template import ChatTemplate, TemplateError
from shard.engine.drafting import (
    NGRAM,
    SCOUT,
    DraftLength,
    DraftOutcome,
    MatchAcceptance,
    NgramIndex,
    ScoutDraft,
    ScoutDrafts,
    SequenceUpdate,
    usable_part,
)
from shard.engine.llama_model import Batch, ContextShape, LlamaModel
from shard.engine.sampling import (
    Logits,
    coupled_uniform,
    needs_processing,
    pick_token,
    process_logits,
    token_logprob,
)
from shard.engine.step_cost import (
    CALIBRATION_SIZES,
    DraftGate,
    StepCost,
    best_draft_length,
)
from shard.engine.text_stream import TextStream
from shard.engine.types import (
    Admitted,
    ChoiceDelta,
    EngineEvent,
    FinishReason,
    GenerationRequest,
    Rejected,
    TokenLogprob,
)

log = logging.getLogger(__name__)

Deliver = Callable[[list[tuple[str, EngineEvent]]], None]
"""Hands one step's events, keyed by request id, to the asyncio side (must not block)."""

SwarmReport = Callable[[list[SequenceUpdate | DraftOutcome]], None]
"""Hands one step's sequence progress and draft outcomes to the swarm (must not block)."""


@dataclass(frozen=True)
class EngineConfig:
    """What the engine thread needs to build its model and context."""

    model_path: Path
    n_ctx: int
    n_seq: int
    n_batch: int
    threads: int
    chat_template: str | None = None
    draft_max: int = 16
    """Most draft tokens verified for one sequence in one step; 0 turns speculation off."""
    ngram_drafts: bool = True
    draft_min_acceptance: float = 0.5
    """A scout whose recent acceptance is below this gets no drafts verified (k = 0)."""


@dataclass(eq=False)
class _Choice:
    """One sequence: a choice of a request, decoding in its own KV stream.

    `position` is where `next_token` (sampled, not yet decoded) goes; `history.tokens` holds
    the prompt and every sampled token, `next_token` included.
    """

    index: int
    seq_id: int
    text: TextStream
    scout_length: DraftLength
    key: str = field(default_factory=lambda: secrets.token_hex(8))
    history: NgramIndex = field(default_factory=NgramIndex)
    position: int = 0
    next_token: int | None = None
    generated: int = 0
    counts: Counter[int] = field(default_factory=Counter)
    batch_indices: list[int] = field(default_factory=list)
    finished: bool = False
    draft: list[int] = field(default_factory=list)
    draft_source: str = NGRAM
    proposed: int = 0
    """How many of `draft` came from a source; the rest pad the batch."""
    draft_match: int = 0
    """The match length behind an n-gram draft (or shadow guess)."""
    shadow_guess: int | None = None
    scout_draft: ScoutDraft | None = None
    scout_scored: int = 0
    reported: int = 0


@dataclass(eq=False)
class _Task:
    """A request inside the engine: its prompt, how much of it is cached, its choices."""

    request: GenerationRequest
    prompt: list[int]
    max_new: int
    choices: list[_Choice] = field(default_factory=list)
    prefilled: int = 0
    logits_index: int = -1

    @property
    def lead(self) -> _Choice:
        return self.choices[0]


@dataclass(frozen=True)
class _Submit:
    request: GenerationRequest


@dataclass(frozen=True)
class _Cancel:
    request_id: str


class _Stop:
    pass


class Engine:
    """Owns the model on a thread of its own; `submit` and `cancel` are safe from any thread."""

    def __init__(
        self, config: EngineConfig, deliver: Deliver, report: SwarmReport | None = None
    ) -> None:
        self.config = config
        self._deliver = deliver
        self._report = report
        self.scout_drafts = ScoutDrafts()
        self.swarm_active = False
        """Set by the hub while scouts are connected: only then is progress reported."""
        self.tokenizer_fingerprint = ""
        self._inbox: queue.Queue[_Submit | _Cancel | _Stop] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="shard-engine", daemon=True)
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.template_description = ""
        self.n_vocab = 0
        self._waiting: deque[_Task] = deque()
        self._running: list[_Task] = []
        self._outbox: list[tuple[str, EngineEvent]] = []
        self._swarm_outbox: list[SequenceUpdate | DraftOutcome] = []

    # -- any thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest) -> None:
        self._inbox.put(_Submit(request))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(_Cancel(request_id))

    def stop(self, timeout: float = 10.0) -> None:
        self._inbox.put(_Stop())
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- engine thread ----------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._load()
        except BaseException as error:  # reported to the API as a failed start
            log.exception("model failed to load")
            self.load_error = error
            self.ready.set()
            return
        self.ready.set()
        try:
            while self._handle_inbox(block=not (self._running or self._waiting)):
                self._admit_waiting()
                if self._running:
                    self._guarded_step()
                self._flush()
        finally:
            self._batch.free()
            self._model.close()

    def _load(self) -> None:
        config = self.config
        shape = ContextShape(config.n_ctx, config.n_seq, config.n_batch, config.threads)
        self._model = LlamaModel(config.model_path, shape)
        self._template = ChatTemplate.choose(
            config.chat_template,
            self._model.embedded_chat_template(),
            self._model.metadata("general.architecture") or "",
            self._model.bos_text(),
            self._model.eos_text(),
        )
        self.template_description = self._template.description
        self.n_vocab = self._model.n_vocab
        self.tokenizer_fingerprint = self._model.tokenizer_fingerprint()
        self._bos_text = self._model.bos_text()
        self._batch = Batch(config.n_batch + config.n_seq, config.n_seq)
        self._free_seq_ids = list(range(config.n_seq))
        self._cost = StepCost()
        self._gate = DraftGate()
        self._ngram_acceptance = MatchAcceptance()
        if config.draft_max > 0:
            self._calibrate()
        log.info(
            "model loaded: %s, chat template %s", config.model_path, self._template.description
        )

    def _calibrate(self) -> None:
        """Time decodes of a few sizes (every token with logits, as in verification) so the
        first drafts are weighed against this machine's real costs."""
        limit = min(self.config.n_batch, self.config.n_ctx)
        for size in (s for s in CALIBRATION_SIZES if s <= limit):
            for _ in range(2):  # the first run of a size warms it up
                self._batch.clear()
                for position in range(size):
                    self._batch.add(self._model.bos_token, position, 0, True)
                started = time.perf_counter()
                self._model.decode(self._batch)
                for index in range(size):  # as verification reads every token's logits
                    int(np.argmax(self._model.logits(index)))
                elapsed = time.perf_counter() - started
                self._model.forget(0)
            self._cost.observe(size, elapsed)
        self._batch.clear()

    def _handle_inbox(self, block: bool) -> bool:
        """Take every pending command; wait for one when idle. False means stop."""
        try:
            command = self._inbox.get(block=block)
        except queue.Empty:
            return True
        while True:
            if isinstance(command, _Stop):
                return False
            if isinstance(command, _Submit):
                self._guarded_accept(command.request)
            else:
                self._drop(command.request_id)
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                self._flush()
                return True

    def _guarded_accept(self, request: GenerationRequest) -> None:
        try:
            self._accept(request)
        except Exception:
            log.exception("could not prepare request %s", request.request_id)
            message = "the engine could not prepare this request"
            self._emit(request.request_id, Rejected("internal_error", message))

    def _accept(self, request: GenerationRequest) -> None:
        """Render and tokenize the prompt, check it fits, and queue it (or refuse it)."""
        rid = request.request_id
        n_ctx = self.config.n_ctx
        if request.n > self.config.n_seq:
            message = f"n={request.n} is more than this server runs at once ({self.config.n_seq})"
            self._emit(rid, Rejected("invalid_request", message, "n"))
            return
        bad_bias = [t for t in request.sampling.logit_bias if not 0 <= t < self._model.n_vocab]
        if bad_bias:
            message = f"logit_bias has token ids outside the vocabulary: {bad_bias[:5]}"
            self._emit(rid, Rejected("invalid_request", message, "logit_bias"))
            return
        try:
            text = (
                request.raw_prompt
                if request.raw_prompt is not None
                else self._template.render(request.messages)
            )
        except TemplateError as error:
            self._emit(rid, Rejected("invalid_request", str(error), "messages"))
            return
        if self._bos_text and text.startswith(self._bos_text):
            text = text[len(self._bos_text) :]  # tokenize adds BOS itself
        prompt = self._model.tokenize(text)
        if len(prompt) >= n_ctx:
            message = (
                f"This model's maximum context length is {n_ctx} tokens. However, your "
                f"messages resulted in {len(prompt)} tokens. Please reduce the length of the "
                "messages."
            )
            self._emit(rid, Rejected("context_length_exceeded", message, "messages"))
            return
        room = n_ctx - len(prompt)
        if request.max_tokens > room and not request.shrink_to_fit:
            message = (
                f"This model's maximum context length is {n_ctx} tokens. However, you "
                f"requested {len(prompt) + request.max_tokens} tokens ({len(prompt)} in the "
                f"messages, {request.max_tokens} in the completion). Please reduce the length "
                "of the messages or completion."
            )
            self._emit(rid, Rejected("context_length_exceeded", message, "messages"))
            return
        max_new = min(request.max_tokens, room)
        prompt_ids = tuple(prompt) if request.token_ids else ()
        self._emit(rid, Admitted(prompt_tokens=len(prompt), prompt_ids=prompt_ids))
        self._waiting.append(_Task(request, prompt, max_new))

    def _admit_waiting(self) -> None:
        """Move waiting tasks to running, in order, while there are free sequences."""
        while self._waiting and len(self._free_seq_ids) >= self._waiting[0].request.n:
            task = self._waiting.popleft()
            for index in range(task.request.n):
                stream = TextStream(task.request.stop)
                seq_id = min(self._free_seq_ids)
                self._free_seq_ids.remove(seq_id)
                scout_length = DraftLength(self.config.draft_max, self.config.draft_min_acceptance)
                task.choices.append(_Choice(index, seq_id, stream, scout_length))
            self._running.append(task)

    def _drop(self, request_id: str) -> None:
        """Cancel a request: its sequences are freed before the next decode."""
        for task in self._waiting:
            if task.request.request_id == request_id:
                self._waiting.remove(task)
                return
        for task in self._running:
            if task.request.request_id == request_id:
                self._retire(task)
                return

    def _retire(self, task: _Task) -> None:
        for choice in task.choices:
            self._model.forget(choice.seq_id)
            self._free_seq_ids.append(choice.seq_id)
            self.scout_drafts.discard(choice.key)
            if choice.reported:
                owner = task.request.owner
                self._swarm_outbox.append(SequenceUpdate(choice.key, owner, 0, (), ended=True))
        self._running.remove(task)

    def _guarded_step(self) -> None:
        """A bug in one step fails the running requests (500) instead of hanging everyone."""
        try:
            self._step()
        except Exception:
            log.exception("engine step failed; failing the running requests")
            self._fail_running("the engine failed while generating this request")

    def _fail_running(self, message: str) -> None:
        for task in list(self._running):
            self._emit(task.request.request_id, Rejected("internal_error", message))
            self._retire(task)

    def _step(self) -> None:
        """One batched decode over all running choices, their drafts, and prompt chunks."""
        decoding = [
            (task, choice)
            for task in self._running
            for choice in task.choices
            if choice.next_token is not None
        ]
        budget = self.config.n_batch - len(decoding)
        prefilling = any(task.prefilled < len(task.prompt) for task in self._running)
        # a prompt chunk already splits the batch: drafts would only add sub-batches
        self._plan_drafts(decoding, 0 if prefilling else budget)
        drafted = sum(len(choice.draft) for _, choice in decoding)
        chunks = self._plan_prompt_chunks(budget - drafted)
        if not decoding and not chunks:
            return
        self._fill_batch(decoding, chunks)
        started = time.perf_counter()
        self._model.decode(self._batch)
        made = -sum(choice.generated for _, choice in decoding)
        for task, choice in decoding:
            self._verify(task, choice)
        made += sum(choice.generated for _, choice in decoding)
        seconds = time.perf_counter() - started
        if not chunks and decoding:
            any_drafted = any(choice.draft for _, choice in decoding)
            self._gate.observe(len(decoding), any_drafted, made, seconds)
            if len({len(choice.draft) for _, choice in decoding}) == 1:
                # one sub-batch: a decode and its verification, what drafts are weighed against
                self._cost.observe(len(self._batch), seconds)
        for task, take in chunks:
            task.prefilled += take
            if task.prefilled == len(task.prompt):
                self._start_choices(task)
        for task in [t for t in self._running if all(c.finished for c in t.choices)]:
            self._retire(task)
        if self.swarm_active:
            self._report_progress()

    def _plan_drafts(self, decoding: list[tuple[_Task, _Choice]], budget: int) -> None:
        """Choose this step's draft tokens across all decoding choices.

        Every choice offers its best draft with each token's chance of acceptance (a scout's
        recent rate to the power of the token's place; for an n-gram draft, how drafts after
        matches as long have fared). One length k is chosen for all, the one that most raises
        the step's expected tokens per second by this machine's measured decode costs, of
        those that slow no sequence down: with many sequences on a busy CPU that is often
        none.
        """
        offers: list[tuple[_Task, _Choice, str, list[int]]] = []
        gains: list[list[float]] = []
        share = budget // max(1, len(decoding))
        for task, choice in decoding:
            choice.draft = []
            source, tokens, chances = self._propose(task, choice, share)
            offers.append((task, choice, source, tokens))
            gains.append(chances)
        k = best_draft_length(gains, self._cost) if self._gate.allows(len(decoding)) else 0
        for task, choice, source, tokens in offers:
            room = self._draft_room(task, choice)
            filler = tokens[-1] if tokens else choice.next_token
            choice.draft = (tokens[:k] + [filler or 0] * k)[: min(k, room)]
            choice.proposed = min(len(tokens), len(choice.draft))
            choice.draft_source = source
            if tokens and not k and source == NGRAM:
                choice.shadow_guess = tokens[0]  # not worth verifying now: still score it

    def _draft_room(self, task: _Task, choice: _Choice) -> int:
        """Draft tokens that still fit the sequence's context and its max_tokens."""
        return min(
            self.config.n_ctx - 1 - choice.position,
            task.max_new - choice.generated - 1,
        )

    def _propose(
        self, task: _Task, choice: _Choice, budget: int
    ) -> tuple[str, list[int], list[float]]:
        """A choice's best draft (source, tokens, each prefix's chance of acceptance), maybe
        empty.

        A scout's draft counts where it agrees with what has been decided since it was made;
        of it and the n-gram proposer's, the one with more tokens expected to be accepted
        wins. A scout under the acceptance floor offers nothing, but its drafts are still
        scored against the outcome so it can earn drafts back; so is the first token of a
        winning n-gram draft that is not verified.
        """
        choice.shadow_guess = None
        room = min(budget, self._draft_room(task, choice))
        offers: list[tuple[str, list[int], list[float]]] = []
        scout_tokens = self._scout_draft_for(choice, choice.history.tokens)
        scout = choice.scout_length
        scout_k = min(scout.next_k(), room)
        if scout_tokens and scout_k > 0:
            tokens = scout_tokens[:scout_k]
            offers.append((SCOUT, tokens, [scout.rate**j for j in range(1, len(tokens) + 1)]))
        if self.config.ngram_drafts and self.config.draft_max > 0:
            tokens, choice.draft_match = choice.history.propose(min(room, self.config.draft_max))
            chances = self._ngram_acceptance.chances(choice.draft_match, len(tokens))
            offers.append((NGRAM, tokens, chances))
        return max(offers, key=lambda offer: sum(offer[2]), default=(NGRAM, [], []))

    def _scout_draft_for(self, choice: _Choice, history: list[int]) -> list[int]:
        """The latest scout draft's still-open tokens; its newly decided ones are scored."""
        draft = self.scout_drafts.latest(choice.key)
        if draft is None:
            return []
        if draft is not choice.scout_draft:
            choice.scout_draft, choice.scout_scored = draft, 0
        rest, decided, matched = usable_part(history, draft)
        if decided > choice.scout_scored:
            accepted = max(0, matched - choice.scout_scored)
            self._record(choice, SCOUT, draft.scout_id, decided - choice.scout_scored, accepted)
            choice.scout_scored = decided
        valid = 0
        while valid < len(rest) and 0 <= rest[valid] < self.n_vocab:
            valid += 1
        return rest[:valid]

    def _verify(self, task: _Task, choice: _Choice) -> None:
        """Sample the target's token at each drafted position; keep the draft up to the first
        token that differs (that sampled token replaces it) and rewind the cache past it."""
        start, draft = choice.position, choice.draft
        accepted = 0
        for j, index in enumerate(choice.batch_indices):
            token = self._advance(task, choice, self._model.logits(index))
            if j == 0 and choice.shadow_guess is not None:
                accepted_guess = int(token == choice.shadow_guess)
                self._ngram_acceptance.record(choice.draft_match, 1, accepted_guess)
            if choice.finished or j == len(draft) or token != draft[j]:
                break
            accepted += 1
        choice.position = start + 1 + accepted
        if not draft:
            return
        if not choice.finished and accepted < len(draft):
            self._model.forget(choice.seq_id, choice.position)
        proposed = choice.proposed  # the rest was filler that keeps the batch even
        if not proposed:
            return
        accepted = min(accepted, proposed)
        tried = min(proposed, accepted + 1)
        scout_id = None
        if choice.draft_source == SCOUT and choice.scout_draft is not None:
            scout_id = choice.scout_draft.scout_id
            choice.scout_scored += tried
        self._record(choice, choice.draft_source, scout_id, tried, accepted, proposed)

    def _record(
        self,
        choice: _Choice,
        source: str,
        scout_id: str | None,
        tried: int,
        accepted: int,
        verified: int = 0,
    ) -> None:
        """Update the source's acceptance; `verified` tokens (drafts decoded) go to metrics."""
        if source == SCOUT:
            choice.scout_length.record(tried, accepted)
        else:
            self._ngram_acceptance.record(choice.draft_match, tried, accepted)
        proposed = verified or tried
        self._swarm_outbox.append(DraftOutcome(source, scout_id, proposed, accepted))

    def _report_progress(self) -> None:
        """Tell the swarm every running sequence's tokens it has not seen yet."""
        for task in self._running:
            for choice in task.choices:
                history = choice.history.tokens
                if choice.next_token is None or len(history) <= choice.reported:
                    continue
                new = tuple(history[choice.reported :])
                update = SequenceUpdate(choice.key, task.request.owner, choice.reported, new)
                self._swarm_outbox.append(update)
                choice.reported = len(history)

    def _plan_prompt_chunks(self, budget: int) -> list[tuple[_Task, int]]:
        """How many prompt tokens of which tasks fit in the batch's spare room, in order."""
        chunks: list[tuple[_Task, int]] = []
        for task in self._running:
            remaining = len(task.prompt) - task.prefilled
            if remaining == 0:
                continue
            if budget <= 0:
                break
            take = min(budget, remaining)
            chunks.append((task, take))
            budget -= take
        return chunks

    def _fill_batch(
        self, decoding: list[tuple[_Task, _Choice]], chunks: list[tuple[_Task, int]]
    ) -> None:
        """Add tokens in ascending sequence id.

        With one KV stream per sequence, llama.cpp splits a batch into one sub-batch per run
        of consecutive sequence ids; out of order, 8 sequences cost 8 graph runs instead of 1.
        """
        batch = self._batch
        batch.clear()
        entries: list[tuple[int, _Choice | tuple[_Task, int]]] = [
            (choice.seq_id, choice) for _, choice in decoding
        ]
        entries += [(task.lead.seq_id, (task, take)) for task, take in chunks]
        for seq_id, entry in sorted(entries, key=lambda item: item[0]):
            if isinstance(entry, _Choice):
                assert entry.next_token is not None
                position = entry.position
                entry.batch_indices = [batch.add(entry.next_token, position, seq_id, True)]
                for offset, token in enumerate(entry.draft, start=1):
                    entry.batch_indices.append(batch.add(token, position + offset, seq_id, True))
                continue
            task, take = entry
            last = len(task.prompt) - 1
            for position in range(task.prefilled, task.prefilled + take):
                index = batch.add(task.prompt[position], position, seq_id, position == last)
            if task.prefilled + take == len(task.prompt):
                task.logits_index = index

    def _start_choices(self, task: _Task) -> None:
        """The prompt is cached: share it with the other choices, then sample first tokens."""
        for choice in task.choices[1:]:
            self._model.copy_sequence(task.lead.seq_id, choice.seq_id)
        logits = self._model.logits(task.logits_index)
        for choice in task.choices:
            choice.position = len(task.prompt)
            choice.history.extend(task.prompt)
            self._advance(task, choice, logits)

    def _advance(self, task: _Task, choice: _Choice, logits: Logits) -> int:
        """Sample the choice's next token from `logits`, report what it adds, return it."""
        params = task.request.sampling
        processed = (
            process_logits(logits, params, choice.counts)
            if needs_processing(params, choice.counts)
            else logits
        )
        u = coupled_uniform(params.seed, choice.index, choice.generated)
        token = pick_token(processed, params, u)
        choice.generated += 1
        choice.counts[token] += 1
        choice.history.extend((token,))
        logprobs: tuple[TokenLogprob, ...] = ()
        if params.logprobs:
            logprobs = (token_logprob(logits, token, params.top_logprobs, self._model.piece),)
        finish: FinishReason | None = None
        if self._model.is_end_of_generation(token):
            text, finish = choice.text.flush(), "stop"
        else:
            text = choice.text.push(self._model.piece(token))
            if choice.text.stopped:
                finish = "stop"
            elif choice.generated >= task.max_new:
                text, finish = text + choice.text.flush(), "length"
        if finish is None:
            choice.next_token = token
        else:
            choice.next_token = None
            choice.finished = True
        if text or logprobs or finish or task.request.token_ids:
            ids = (token,) if task.request.token_ids else ()
            delta = ChoiceDelta(choice.index, text, choice.generated, logprobs, finish, ids)
            self._emit(task.request.request_id, delta)
        return token

    def _emit(self, request_id: str, event: EngineEvent) -> None:
        self._outbox.append((request_id, event))

    def _flush(self) -> None:
        if self._outbox:
            events, self._outbox = self._outbox, []
            self._deliver(events)
        if self._swarm_outbox:
            reports, self._swarm_outbox = self._swarm_outbox, []
            if self._report is not None:
                self._report(reports)
