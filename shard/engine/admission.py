"""Turning a request into a task: render the prompt, tokenize it, check it fits.

Refusals are the engine's own (`Rejected`); the API maps them to OpenAI errors.
"""

import json

from shard.engine.chat_template import ChatTemplate, TemplateError
from shard.engine.constraint import GrammarError, TokenConstraint
from shard.engine.literal_text import Span, render
from shard.engine.model import Model
from shard.engine.sequence import Task
from shard.engine.types import GenerationRequest, Rejected


def prepare(
    request: GenerationRequest, model: Model, template: ChatTemplate, n_ctx: int, n_seq: int
) -> Task | Rejected:
    """The request as a task ready to queue, or why it cannot run."""
    if request.n > n_seq:
        message = f"n={request.n} is more than this server runs at once ({n_seq})"
        return Rejected("invalid_request", message, "n")
    bad_bias = [t for t in request.sampling.logit_bias if not 0 <= t < model.n_vocab]
    if bad_bias:
        message = f"logit_bias has token ids outside the vocabulary: {bad_bias[:5]}"
        return Rejected("invalid_request", message, "logit_bias")
    if request.prompt_ids is not None:
        prompt = _checked_ids(request.prompt_ids, model.n_vocab, n_ctx)
        if isinstance(prompt, Rejected):
            return prompt
        return _fitted(request, model, prompt, n_ctx, "prompt")
    literal: list[Span] = []  # a legacy prompt is the client's own markup, as in llama.cpp
    try:
        if request.raw_prompt is not None:
            text = request.raw_prompt
        else:
            tools = json.loads(request.tools) if request.tools else None
            text, literal = render(template, request.messages, tools, model.control_text)
    except TemplateError as error:
        return Rejected("invalid_request", str(error), "messages")
    bos_text = model.bos_text()
    template_bos = bos_text and text.startswith(bos_text)
    if template_bos and not (literal and literal[0][0] < len(bos_text)):
        text = text[len(bos_text) :]  # tokenize adds BOS itself
        literal = [(a - len(bos_text), b - len(bos_text)) for a, b in literal]
    given = "messages" if request.raw_prompt is None else "prompt"  # legacy completions
    fewest = _fewest_tokens(text, model)
    if fewest >= n_ctx:  # not tokenized: megabytes take seconds, and the engine waits
        return _too_long(n_ctx, given, f"at least {fewest}")
    prompt = model.tokenize(text, literal)
    if len(prompt) >= n_ctx:
        return _too_long(n_ctx, given, str(len(prompt)))
    return _fitted(request, model, prompt, n_ctx, given)


def _checked_ids(ids: tuple[int, ...], n_vocab: int, n_ctx: int) -> list[int] | Rejected:
    """A prompt the client tokenized itself (lm-evaluation-harness does), used as it is."""
    if len(ids) >= n_ctx:
        return _too_long(n_ctx, "prompt", str(len(ids)))
    outside = [token for token in ids if not 0 <= token < n_vocab]
    if outside:
        message = f"prompt has token ids outside the vocabulary (0 to {n_vocab - 1}): {outside[:5]}"
        return Rejected("invalid_request", message, "prompt")
    return list(ids)


def _fitted(
    request: GenerationRequest, model: Model, prompt: list[int], n_ctx: int, given: str
) -> Task | Rejected:
    """The task for a tokenized prompt that fits, if the completion fits after it."""
    room = n_ctx - len(prompt)
    if request.max_tokens > room and not request.shrink_to_fit:
        message = (
            f"This model's maximum context length is {n_ctx} tokens. However, you "
            f"requested {len(prompt) + request.max_tokens} tokens ({len(prompt)} in the "
            f"{given}, {request.max_tokens} in the completion). Please reduce the length "
            f"of the {given} or completion."
        )
        return Rejected("context_length_exceeded", message, given)
    constraint = None
    if request.grammar is not None:
        try:
            constraint = TokenConstraint(model.grammar_tokenizer(), request.grammar.grammar)
        except GrammarError as error:
            return Rejected("invalid_request", str(error), request.grammar.param)
    longest = model.max_token_bytes
    predicted = request.prediction
    if predicted and longest is not None:
        predicted = predicted[: longest * (n_ctx + 16)]  # keeps its first n_ctx tokens
    prediction = model.tokenize(predicted) if predicted else []
    if prediction and prediction[0] == model.bos_token:
        prediction = prediction[1:]  # tokenize starts a document; this continues one
    prediction = prediction[:n_ctx]  # no answer is longer; a longer one costs its index
    task = Task(request, prompt, min(request.max_tokens, room), constraint=constraint)
    task.prediction = prediction
    return task


def _fewest_tokens(text: str, model: Model) -> int:
    """A lower bound on the tokens `text` becomes, found without tokenizing it."""
    longest = model.max_token_bytes
    return 0 if longest is None else -(-len(text.encode()) // longest)


def _too_long(n_ctx: int, given: str, tokens: str) -> Rejected:
    message = (
        f"This model's maximum context length is {n_ctx} tokens. However, your "
        f"{given} resulted in {tokens} tokens, and a completion needs room after "
        f"them. Please reduce the length of the {given}."
    )
    return Rejected("context_length_exceeded", message, given)
