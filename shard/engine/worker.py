"""The engine thread: the only code that calls into the model (docs/architecture.md,
invariant 5).

Tasks come in through a thread-safe inbox; events go out through `deliver`, once per step
(llama.cpp server's task queue). Each step puts every running choice's next token and its
draft tokens, plus as much waiting prompt as fits in `n_batch`, into ONE decode. Each draft is
then verified against what the target samples, and the cache is rewound past the first
rejected token (gpt-fast's speculative loop, batched).
"""

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shard.engine.admission import prepare
from shard.engine.batching import fill_batch, plan_prompt_chunks
from shard.engine.chat_template import ChatTemplate
from shard.engine.constraint import GrammarDeadEnd
from shard.engine.devices import GpuOffload, backend_of, devices
from shard.engine.llama_model import MAX_UBATCH, ContextShape, LlamaModel
from shard.engine.model import Model
from shard.engine.prefix_cache import SequencePool
from shard.engine.progress import ProgressFeed, ReportProgress
from shard.engine.sampling import (
    Logits,
    coupled_uniform,
    needs_processing,
    pick_token,
    process_logits,
    token_logprob,
)
from shard.engine.sequence import Choice, StepDraft, Task
from shard.engine.spec.calibration import CalibrationCache, calibration_key
from shard.engine.spec.exactness import drafts_are_exact
from shard.engine.spec.planner import DraftPlanner, best_offer, padded_draft
from shard.engine.spec.prediction import PredictionAlignment
from shard.engine.spec.proposers import (
    NgramProposer,
    PredictionProposer,
    Proposal,
    Proposer,
    ScoutProposer,
)
from shard.engine.spec.scout_drafts import DraftSink
from shard.engine.spec.verify import accepted_count
from shard.engine.text_stream import TextStream
from shard.engine.types import (
    Admitted,
    ChoiceDelta,
    EngineEvent,
    EngineStatus,
    FinishReason,
    GenerationRequest,
    PredictionUsed,
    PromptCached,
    PromptLogprobs,
    Rejected,
)

log = logging.getLogger(__name__)

Deliver = Callable[[list[tuple[str, EngineEvent]]], None]
"""Hands one step's events, keyed by request id, to the asyncio side (must not block)."""


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
    calibration_cache: Path | None = None
    """Where decode timings measured at start are kept for the next start; None: nowhere."""
    prefix_cache: bool = True
    """Reuse a free sequence's cached prefix (only where drafts are exact: cached tokens were
    decoded in other batches than a fresh prefill would use)."""
    prefix_cache_tokens: int | None = None
    """Most tokens free sequences keep cached together; None: all that `n_seq` streams of
    `n_ctx` hold."""
    gpu: GpuOffload = field(default_factory=GpuOffload)
    cede_threads: bool = False
    """`threads` is the default, every core: give one up for each CPU thread of a scout
    drafting on this machine while it is connected, so that the two never share a core
    (llama.cpp's threads wait for each other at every step, so one taken away slows them all
    far more than it works)."""


LoadModel = Callable[[EngineConfig], Model]
"""Builds the model; called on the engine thread."""


def load_llama_model(config: EngineConfig) -> Model:
    shape = ContextShape(config.n_ctx, config.n_seq, config.n_batch, config.threads)
    return LlamaModel(config.model_path, shape, config.gpu)


@dataclass(frozen=True)
class _Submit:
    request: GenerationRequest


@dataclass(frozen=True)
class _Cancel:
    request_id: str


@dataclass(frozen=True)
class _CedeThreads:
    threads: int


class _Stop:
    pass


class Engine:
    """Owns the model on a thread of its own; `submit`, `cancel`, `drafts` and
    `progress.follow` are safe from any thread."""

    def __init__(
        self,
        config: EngineConfig,
        deliver: Deliver,
        report: ReportProgress | None = None,
        load_model: LoadModel = load_llama_model,
    ) -> None:
        self.config = config
        self.drafts = DraftSink()
        """Where the swarm posts scout drafts; read by the engine thread without waiting."""
        self.progress = ProgressFeed(report)
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.status: EngineStatus | None = None
        """Set once the model has loaded."""
        self._deliver = deliver
        self._load_model = load_model
        self._inbox: queue.Queue[_Submit | _Cancel | _CedeThreads | _Stop] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="shard-engine", daemon=True)
        self._waiting: deque[Task] = deque()
        self._running: list[Task] = []
        self.sequences = (0, 0)
        """(sequences decoding, requests waiting for sequences), as of the last step; set by
        the engine thread, read from any thread."""
        self.threads = config.threads
        """CPU threads decoding now (fewer than configured while ceded to local scouts)."""
        self._ceded = 0
        """CPU threads scouts on this machine draft with, as last told."""
        self._outbox: list[tuple[str, EngineEvent]] = []

    # -- any thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest) -> None:
        self._inbox.put(_Submit(request))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(_Cancel(request_id))

    def cede_threads(self, threads: int) -> None:
        """Scouts on this machine now draft with this many CPU threads in all: decode with
        that many fewer, if `config.cede_threads` allows, but never fewer than half (a scout
        behind a proxy on this machine looks local too, and may claim anything)."""
        self._inbox.put(_CedeThreads(threads))

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
                running = sum(len(task.choices) for task in self._running)
                self.sequences = (running, len(self._waiting))
                self._flush()
        finally:
            self._batch.free()
            self._model.close()

    def _load(self) -> None:
        config = self.config
        model = self._model = self._load_model(config)
        self._template = ChatTemplate.choose(
            config.chat_template,
            model.embedded_chat_template(),
            model.metadata("general.architecture") or "",
            model.bos_text(),
            model.eos_text(),
        )
        self._batch = model.new_batch(config.n_batch + config.n_seq)
        self._pool = SequencePool(config.n_seq, config.prefix_cache_tokens)
        self._planner = DraftPlanner()
        report = self.progress.add
        scouts = ScoutProposer(
            self.drafts, config.draft_max, config.draft_min_acceptance, model.n_vocab, report
        )
        self._proposers: list[Proposer] = [scouts]  # scouts first: they win ties
        if config.draft_max > 0:  # a prediction is the client's own draft: always taken
            self._proposers.append(PredictionProposer(config.draft_max, report))
        if config.ngram_drafts and config.draft_max > 0:
            self._proposers.append(NgramProposer(config.draft_max, report))
        if config.draft_max > 0:
            cache = CalibrationCache(config.calibration_cache) if config.calibration_cache else None
            key = calibration_key(config.model_path, config.threads)
            limit = min(config.n_batch, config.n_ctx)
            self._planner.calibrate(model, self._batch, limit, cache, key)
        exact = drafts_are_exact(model, self._batch)
        self._pad_single_rows = not exact and drafts_are_exact(model, self._batch, True)
        """Give every decode two rows with logits: this build takes another kernel for one."""
        self._chunk_was_last = False
        """Whether the last step prefilled (with rows padded, prefill and decoding alternate)."""
        exact = exact or self._pad_single_rows
        self._reuse = config.prefix_cache and exact
        if self._pad_single_rows:
            log.warning(
                "this build computes one row of this model's weights with another kernel than "
                "several (llamafile's sgemm for 2+ rows): every decode gets at least two rows "
                "with logits so that drafts stay exact; a lone sequence's steps cost about as "
                "much as verifying one draft token"
            )
        elif not exact:
            log.warning(
                "drafts are not exact for this model on this build: a batch of draft tokens "
                "gets other logits than one-at-a-time decoding, so output with drafts may "
                "differ from output without (it still follows the model's distribution)"
            )
        # made now, not in the first request's time: admission reads both for every prompt
        log.debug("one token stands for at most %s bytes of text", model.max_token_bytes)
        log.debug("control tokens kept literal in messages: %s", model.control_text is not None)
        self.status = EngineStatus(
            n_vocab=model.n_vocab,
            n_ctx=config.n_ctx,
            n_seq=config.n_seq,
            draft_max=config.draft_max,
            tokenizer_fingerprint=model.tokenizer_fingerprint(),
            chat_template=self._template.description,
            drafts_exact=exact,
            single_rows_padded=self._pad_single_rows,
            prefix_cache_tokens=(
                (config.prefix_cache_tokens or config.n_ctx * config.n_seq) if self._reuse else 0
            ),
            backend=backend_of(found := devices()),
            devices=tuple(found),
            gpu_layers=model.gpu_layers,
            template_renders_tools=self._template.renders_tools,
        )
        log.info(
            "model loaded: %s, chat template %s, drafts %s",
            config.model_path,
            self.status.chat_template,
            "exact" if exact else "NOT exact",
        )

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
            elif isinstance(command, _CedeThreads):
                self._cede_threads(command.threads)
            else:
                self._drop(command.request_id)
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                self._flush()
                return True

    def _cede_threads(self, ceded: int) -> None:
        if ceded == self._ceded:
            return
        self._ceded = ceded
        if not self.config.cede_threads:
            if ceded and self.config.threads + ceded > (os.cpu_count() or 1):
                log.warning(
                    "scouts on this machine draft with %d CPU thread(s), and --threads %d was "
                    "given: they share cores, which slows decoding; give fewer --threads",
                    ceded,
                    self.config.threads,
                )
            return
        threads = self.config.threads - min(ceded, self.config.threads // 2)
        if threads != self.threads:
            self._model.set_threads(threads)
            self.threads = threads
            log.info("decoding with %d CPU thread(s): %d ceded to scouts here", threads, ceded)

    def _guarded_accept(self, request: GenerationRequest) -> None:
        config = self.config
        try:
            prepared = prepare(request, self._model, self._template, config.n_ctx, config.n_seq)
        except Exception:
            log.exception("could not prepare request %s", request.request_id)
            message = "the engine could not prepare this request"
            prepared = Rejected("internal_error", message)
        if isinstance(prepared, Rejected):
            self._emit(request.request_id, prepared)
            return
        prompt_ids = tuple(prepared.prompt) if request.token_ids else ()
        text = ""
        if request.prompt_ids is not None:
            pieces = b"".join(self._model.piece(token) for token in prepared.prompt)
            text = pieces.decode(errors="replace")
        self._emit(request.request_id, Admitted(len(prepared.prompt), prompt_ids, text))
        self._waiting.append(prepared)

    def _admit_waiting(self) -> None:
        """Move waiting tasks to running, in order, while there are free sequences."""
        while self._waiting and len(self._pool) >= self._waiting[0].request.n:
            task = self._waiting.popleft()
            n, stop = task.request.n, task.request.stop
            reuse = self._reuse and not task.wants_prompt_logprobs
            seq_ids, cached = self._pool.assign(self._model, task.prompt, n, reuse)
            task.choices = [Choice(i, seq_id, TextStream(stop)) for i, seq_id in enumerate(seq_ids)]
            for choice in task.choices:
                if task.prediction:
                    choice.alignment = PredictionAlignment(task.prediction)
                if task.constraint is not None:
                    choice.constraint = task.constraint.copy()
            task.prefilled = cached
            self._emit(task.request.request_id, PromptCached(cached))
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

    def _retire(self, task: Task, failed: bool = False) -> None:
        if task.request.prediction is not None and not failed:
            for choice in task.choices:  # after the choice's last delta, in the same step
                matched = choice.alignment.matched if choice.alignment is not None else 0
                used = PredictionUsed(choice.index, matched, len(task.prediction) - matched)
                self._emit(task.request.request_id, used)
        for choice in task.choices:
            self._pool.release(self._model, choice, keep=self._reuse and not failed)
            for proposer in self._proposers:
                proposer.forget(choice.key)
        self.progress.ended(task)
        self._running.remove(task)

    def _guarded_step(self) -> None:
        """A bug in one step fails the running requests (500) instead of hanging everyone."""
        try:
            self._step()
        except Exception:
            log.exception("engine step failed; failing the running requests")
            for task in list(self._running):
                message = "the engine failed while generating this request"
                self._emit(task.request.request_id, Rejected("internal_error", message))
                self._retire(task, failed=True)  # what its cache holds is not known

    def _step(self) -> None:
        """One batched decode over all running choices, their drafts, and prompt chunks."""
        decoding = [
            (task, choice)
            for task in self._running
            for choice in task.choices
            if choice.next_token is not None
        ]
        prefilling = not all(task.prompt_cached for task in self._running)
        padded = self._pad_single_rows
        if padded and prefilling and not (decoding and self._chunk_was_last):
            # a prompt chunk decodes alone (fill_batch), taking turns with decoding steps
            decoding = []
            budget = min(self.config.n_batch, MAX_UBATCH)  # so that llama.cpp does not split it
            chunks = plan_prompt_chunks(self._running, budget, single=True)
        else:
            budget = self.config.n_batch - len(decoding)
            # a prompt chunk already splits the batch: drafts would only add sub-batches
            self._plan_drafts(decoding, 0 if prefilling and not padded else budget)
            drafted = sum(len(choice.draft.tokens) for _, choice in decoding)
            chunks = [] if padded else plan_prompt_chunks(self._running, budget - drafted)
        self._chunk_was_last = bool(chunks)
        if not decoding and not chunks:
            return
        fill_batch(self._batch, [c for _, c in decoding], chunks, self._pad_single_rows)
        started = time.perf_counter()
        self._model.decode(self._batch)
        made = -sum(choice.generated for _, choice in decoding)
        for task, choice in decoding:
            self._verify(task, choice)
        made += sum(choice.generated for _, choice in decoding)
        seconds = time.perf_counter() - started
        if not chunks and decoding:
            any_drafted = any(len(c.draft.tokens) > c.draft.required for _, c in decoding)
            one_sub_batch = len({len(choice.draft.tokens) for _, choice in decoding}) == 1
            size = len(self._batch) if one_sub_batch else None
            self._planner.observe(len(decoding), any_drafted, made, seconds, size)
        for task, take in chunks:
            task.prefilled += take
            self._score_prompt(task)
            if task.prompt_cached:
                if self._pad_single_rows:
                    self._model.forget(task.lead.seq_id, len(task.prompt))  # a filler, if any
                self._start_choices(task)
        for task in list(self._running):
            if task.failure is not None:
                self._emit(task.request.request_id, task.failure)
                self._retire(task, failed=True)
        for task in [t for t in self._running if all(c.finished for c in t.choices)]:
            self._retire(task)
        if self.progress.following:
            for task in self._running:
                self.progress.new_tokens(task)

    def _plan_drafts(self, decoding: list[tuple[Task, Choice]], budget: int) -> None:
        """Every choice's best proposal, then one draft length k for all of them."""
        share = budget // max(1, len(decoding))
        winners: list[tuple[Proposer | None, Proposal]] = []
        losers: list[list[tuple[Proposer, Proposal]]] = []
        for task, choice in decoding:
            room = min(share, task.draft_room(choice, self.config.n_ctx))
            offers = [(p, p.propose(choice, room)) for p in self._proposers]
            winners.append(best_offer(offers))
            losers.append([o for o in offers if o[1].tokens and o[1] is not winners[-1][1]])
        k = self._planner.draft_length([proposal for _, proposal in winners])
        lone: set[int] = set()
        if self._pad_single_rows:
            # fill_batch: with k > 0 every sequence decodes k + 1 rows (past max_tokens only
            # padding); with k = 0 a sequence without a running neighbour id would be a graph
            # run of one row, so it takes one. The context always has room for one more row:
            # a sequence's last decode is at n_ctx - 2 at the latest.
            k = min([k, *(self.config.n_ctx - 1 - choice.position for _, choice in decoding)])
            ids = {choice.seq_id for _, choice in decoding}
            lone = {seq_id for seq_id in ids if seq_id - 1 not in ids and seq_id + 1 not in ids}
        for (task, choice), (proposer, proposal), others in zip(
            decoding, winners, losers, strict=True
        ):
            required = 1 if choice.seq_id in lone else 0
            length = max(k, required)
            room = length if self._pad_single_rows else task.draft_room(choice, self.config.n_ctx)
            assert choice.next_token is not None
            tokens = padded_draft(proposal.tokens, length, room, choice.next_token)
            choice.draft = StepDraft(proposer, proposal, tokens, others, required)

    def _verify(self, task: Task, choice: Choice) -> None:
        """Sample the target's token at each drafted position, as far as the draft holds; the
        cache is rewound past the first token that differs (that sampled token replaces it)."""
        start, draft, sampled_before = choice.position, choice.draft, len(choice.tokens)

        def targets() -> Iterator[int]:
            for index in choice.batch_indices:
                yield self._advance(task, choice, self._model.logits(index))
                if choice.finished:
                    return

        accepted = accepted_count(draft.tokens, targets())
        choice.position = start + 1 + accepted
        if not choice.finished and accepted < len(draft.tokens):
            self._model.forget(choice.seq_id, choice.position)
        decided = choice.tokens[sampled_before:]
        for loser, offer in draft.others:  # so every source learns, not only the winner
            loser.unverified(choice, offer, decided)
        proposer, proposal = draft.proposer, draft.proposal
        if proposer is None:  # no proposal (any draft tokens were padding)
            return
        decoded = draft.decoded_from_proposal
        if not draft.tokens:  # not worth verifying now; the proposer may score it for free
            proposer.unverified(choice, proposal, decided)
        elif decoded:
            proposer.verified(choice, proposal, decoded, min(accepted, decoded))

    def _score_prompt(self, task: Task) -> None:
        """Logprobs of the prompt tokens this chunk's logits predict; all of them are sent
        once the prompt is decoded."""
        top = task.request.prompt_logprobs
        if top is None:
            return
        for position, index in task.prompt_rows:
            token = task.prompt[position + 1]
            logprob = token_logprob(self._model.logits(index), token, top, self._model.piece)
            task.prompt_logprobs.append(logprob)
        if task.prompt_cached:
            first = self._model.piece(task.prompt[0])
            event = PromptLogprobs(first, tuple(task.prompt_logprobs))
            self._emit(task.request.request_id, event)

    def _start_choices(self, task: Task) -> None:
        """The prompt is cached: share it with the other choices, then sample first tokens."""
        for choice in task.choices[1:]:
            self._model.copy_sequence(task.lead.seq_id, choice.seq_id)
        logits = self._model.logits(task.logits_index)
        for choice in task.choices:
            choice.position = len(task.prompt)
            choice.tokens.extend(task.prompt)
            self._advance(task, choice, logits)

    def _advance(self, task: Task, choice: Choice, logits: Logits) -> int:
        """Sample the choice's next token from `logits`, emit what it adds, return it."""
        params = task.request.sampling
        processed = (
            process_logits(logits, params, choice.counts)
            if needs_processing(params, choice.counts)
            else logits
        )
        if choice.constraint is not None:
            try:
                processed = choice.constraint.allowed(processed)
            except GrammarDeadEnd as error:  # the request fails at the step's end
                param = task.request.grammar.param if task.request.grammar else None
                task.failure = Rejected("invalid_request", str(error), param)
                choice.next_token, choice.finished = None, True
                return -1  # no token: the verification stops at a finished choice
        u = coupled_uniform(params.seed, choice.index, choice.generated)
        token = pick_token(processed, params, u)
        if choice.constraint is not None:
            choice.constraint.consume(token)
        if choice.alignment is not None:
            choice.alignment.advance(token)
        choice.generated += 1
        choice.counts[token] += 1
        choice.tokens.append(token)
        if params.logprobs:
            choice.logprobs.append(
                token_logprob(logits, token, params.top_logprobs, self._model.piece)
            )
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
        logprobs = choice.take_logprobs(finish is not None) if params.logprobs else ()
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
        self.progress.flush()
