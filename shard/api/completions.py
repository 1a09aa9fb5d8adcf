"""Between the wire and the engine: protocol request to GenerationRequest, deltas to responses."""

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator

from shard.api.errors import APIError
from shard.api.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatFinishReason,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionRequest,
    CompletionTokensDetails,
    Delta,
    FunctionCallOut,
    FunctionDelta,
    PromptTokensDetails,
    TextCompletion,
    TokenLogprobOut,
    ToolCallDelta,
    ToolCallOut,
    TopLogprob,
    Usage,
    _SamplingRequest,
)
from shard.api.text_choices import TextChoices, TextShape
from shard.api.tool_calls import (
    ArgumentsAdded,
    CallStarted,
    Content,
    Function,
    PastCall,
    ReadEvent,
    ToolCallReader,
    instruction,
    written_call,
    written_result,
)
from shard.api.tool_calls import grammar as tools_grammar
from shard.engine.client import Generation
from shard.engine.constraint import GrammarError, checked_lark
from shard.engine.types import (
    ChatMessage,
    ChoiceDelta,
    FinishReason,
    GenerationRequest,
    OutputGrammar,
    PastToolCall,
    SamplingParams,
)
from shard.engine.types import TokenLogprob as EngineTokenLogprob

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 500
LEGACY_MAX_TOKENS = 16


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _sampling(body: _SamplingRequest, logprobs: bool, top_logprobs: int) -> SamplingParams:
    """Fill the spec's defaults; without a user seed, draw a secret one (never sent back)."""
    return SamplingParams(
        seed=body.seed if body.seed is not None else secrets.randbits(63),
        temperature=body.temperature if body.temperature is not None else DEFAULT_TEMPERATURE,
        top_p=body.top_p if body.top_p is not None else 1.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in (body.logit_bias or {}).items()},
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def to_generation_request(
    body: ChatCompletionRequest, request_id: str, template_renders_tools: bool = False
) -> GenerationRequest:
    """The engine's request; raises APIError when the tools' grammar cannot be compiled.
    Tools go to a template that renders them as they are; otherwise into the messages."""
    limit = body.completion_limit()
    offered = body.tool_mode() is not None
    native = template_renders_tools and bool(body.tools)
    return GenerationRequest(
        request_id=request_id,
        messages=_template_messages(body) if native else _prompt_messages(body),
        tools=_tools_json(body) if native and offered else None,
        sampling=_sampling(body, bool(body.logprobs), body.top_logprobs or 0),
        max_tokens=limit if limit is not None else DEFAULT_MAX_TOKENS,
        shrink_to_fit=limit is None,
        stop=body.stop_sequences(),
        n=body.n or 1,
        grammar=_output_grammar(body),
        prediction=body.prediction.text() if body.prediction is not None else None,
    )


def _functions(body: ChatCompletionRequest) -> list[Function]:
    return [
        Function(f.name, f.description, f.parameters, bool(f.strict))
        for f in (tool.function for tool in body.tools or [])
    ]


def _tools_json(body: ChatCompletionRequest) -> str:
    return json.dumps([tool.model_dump(exclude_none=True) for tool in body.tools or []])


def _template_messages(body: ChatCompletionRequest) -> tuple[ChatMessage, ...]:
    """The conversation with its calls and results as they are, for a template that
    renders tools itself."""
    return tuple(
        ChatMessage(
            message.role,
            message.text(),
            tuple(
                PastToolCall(call.id, call.function.name, call.function.arguments)
                for call in message.tool_calls or []
            ),
            message.tool_call_id,
        )
        for message in body.messages
    )


def _prompt_messages(body: ChatCompletionRequest) -> tuple[ChatMessage, ...]:
    """The conversation as text messages: earlier tool calls and results written in the
    generic format (shard.api.tool_calls), and, when calls are allowed, the tools offered
    in the system message."""
    messages: list[ChatMessage] = []
    for index, message in enumerate(body.messages):
        text = message.text()
        if message.role == "tool":
            result = written_result(text)
            if index and body.messages[index - 1].role == "tool":  # one turn's results together
                messages[-1] = ChatMessage("user", f"{messages[-1].content}\n{result}")
            else:
                messages.append(ChatMessage("user", result))
            continue
        if message.tool_calls:
            calls = [PastCall(c.function.name, c.function.arguments) for c in message.tool_calls]
            text = "\n".join([text] * bool(text) + [written_call(call) for call in calls])
        messages.append(ChatMessage(message.role, text))
    mode = body.tool_mode()
    if mode is not None:
        offer = instruction(_functions(body), mode, body.parallel_tool_calls is not False)
        if messages[0].role in ("system", "developer"):
            messages[0] = ChatMessage(messages[0].role, f"{offer}\n\n{messages[0].content}")
        else:
            messages.insert(0, ChatMessage("system", offer))
    return tuple(messages)


def _output_grammar(body: ChatCompletionRequest) -> OutputGrammar | None:
    """Calls in the generic format when tools may be called (an answer instead, under
    `auto`, follows the response format); else the response format's grammar, if any."""
    mode, response_format = body.tool_mode(), body.response_format
    if mode is None:
        grammar = response_format.grammar if response_format else None
        return OutputGrammar(grammar, "response_format") if grammar is not None else None
    answer_schema = None
    if response_format is not None and response_format.type == "json_object":
        answer_schema = {"type": "object"}
    elif response_format is not None and response_format.json_schema is not None:
        answer_schema = response_format.json_schema.json_schema or {}
    parallel = body.parallel_tool_calls is not False
    try:
        text = checked_lark(tools_grammar(_functions(body), mode, parallel, answer_schema))
    except GrammarError as error:
        raise APIError(400, f"the tools cannot be used: {error}", param="tools") from error
    except RecursionError:
        message = "the tools' parameters are nested too deeply"
        raise APIError(400, message, param="tools") from None
    return OutputGrammar(text, "tools")


def to_text_generation_requests(
    body: CompletionRequest, completion_id: str
) -> list[GenerationRequest]:
    """One engine request per prompt, each with the body's sampling and `n`."""
    prompts = body.prompts()
    return [
        GenerationRequest(
            request_id=completion_id if len(prompts) == 1 else f"{completion_id}-{number}",
            messages=(),
            raw_prompt=prompt if isinstance(prompt, str) else None,
            prompt_ids=tuple(prompt) if isinstance(prompt, list) else None,
            sampling=_sampling(body, body.logprobs is not None, body.logprobs or 0),
            prompt_logprobs=body.logprobs if body.echo else None,
            max_tokens=body.max_tokens if body.max_tokens is not None else LEGACY_MAX_TOKENS,
            shrink_to_fit=body.max_tokens is None,
            stop=body.stop_sequences(),
            n=body.n or 1,
        )
        for number, prompt in enumerate(prompts)
    ]


def _logprobs_out(items: list[EngineTokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=item.token.decode(errors="replace"),
                logprob=item.logprob,
                bytes=list(item.token),
                top_logprobs=[
                    TopLogprob(token=t.decode(errors="replace"), logprob=lp, bytes=list(t))
                    for t, lp in item.top
                ],
            )
            for item in items
        ]
    )


class CompletionBuilder:
    """Accumulates deltas into the non-streaming object (what is returned and stored)."""

    def __init__(
        self, generation: Generation, completion_id: str, model: str, tool_calls: bool = False
    ) -> None:
        n = generation.request.n
        self._generation = generation
        self._id = completion_id
        self._model = model
        self._created = int(time.time())
        self._texts = [""] * n
        self._logprobs: list[list[EngineTokenLogprob]] = [[] for _ in range(n)]
        self._tokens = [0] * n
        self._finish: list[FinishReason] = ["length"] * n
        self._readers = [ToolCallReader() for _ in range(n)] if tool_calls else None
        """Each choice's output read into content and calls (same ids streamed and stored)."""

    @property
    def created(self) -> int:
        return self._created

    @property
    def reads_tool_calls(self) -> bool:
        return self._readers is not None

    def add(self, delta: ChoiceDelta) -> list[ReadEvent]:
        """Take a delta; what it adds to the choice's content or calls."""
        self._texts[delta.index] += delta.text
        self._logprobs[delta.index].extend(delta.logprobs)
        self._tokens[delta.index] = delta.completion_tokens
        if delta.finish_reason is not None:
            self._finish[delta.index] = delta.finish_reason
        if self._readers is None:
            return [Content(delta.text)] if delta.text else []
        reader = self._readers[delta.index]
        events = reader.feed(delta.text)
        return events + reader.finish() if delta.finish_reason is not None else events

    def finish_reason(self, index: int) -> ChatFinishReason:
        """`tool_calls` when the choice ended on its own after complete calls."""
        finish = self._finish[index]
        calls = self._readers[index].calls if self._readers is not None else []
        if finish == "stop" and calls and all(call.complete for call in calls):
            return "tool_calls"
        return finish

    def _message(self, index: int) -> AssistantMessage:
        if self._readers is None:
            return AssistantMessage(content=self._texts[index])
        reader = self._readers[index]
        calls = [
            ToolCallOut(
                id=call.id, function=FunctionCallOut(name=call.name, arguments=call.arguments)
            )
            for call in reader.calls
        ]
        if not calls:
            return AssistantMessage(content=reader.content)
        return AssistantMessage(content=reader.content or None, tool_calls=calls)

    def text_result(self, shape: TextShape | None = None) -> TextCompletion:
        """The legacy `text_completion` object."""
        choices = TextChoices(self._generation, shape or TextShape())
        return TextCompletion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[
                choices.whole(i, text, self._logprobs[i], self._finish[i])
                for i, text in enumerate(self._texts)
            ],
            usage=self.usage(),
        )

    def usage(self) -> Usage:
        generation = self._generation
        prompt = generation.prompt_tokens
        completion = sum(self._tokens)
        details = None
        if generation.request.prediction is not None:
            details = CompletionTokensDetails(
                accepted_prediction_tokens=generation.prediction_accepted,
                rejected_prediction_tokens=generation.prediction_rejected,
            )
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=generation.cached_tokens),
            completion_tokens_details=details,
        )

    def result(self) -> ChatCompletion:
        want_logprobs = self._generation.request.sampling.logprobs
        choices = [
            Choice(
                index=i,
                message=self._message(i),
                logprobs=_logprobs_out(self._logprobs[i]) if want_logprobs else None,
                finish_reason=self.finish_reason(i),
            )
            for i in range(len(self._texts))
        ]
        return ChatCompletion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            usage=self.usage(),
        )


async def stream_chunks(
    builder: CompletionBuilder, generation: Generation, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """OpenAI's chunk sequence: a role chunk per choice, content, finish, then maybe usage."""
    result = builder.result()

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=result.id, created=result.created, model=result.model, choices=choices, usage=usage
        )

    want_logprobs = generation.request.sampling.logprobs
    for index in range(generation.request.n):
        yield chunk([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
    async for delta in generation.deltas():
        events = builder.add(delta)
        logprobs = _logprobs_out(list(delta.logprobs)) if want_logprobs else None
        if not events and delta.logprobs and not builder.reads_tool_calls:
            events = [Content("")]  # logprobs of text held back (it may become a stop string)
        for event in events:
            choice = ChunkChoice(index=delta.index, delta=_delta(event), logprobs=logprobs)
            logprobs = None  # on the first chunk of what this delta adds
            yield chunk([choice])
        if delta.finish_reason is not None:
            finish = builder.finish_reason(delta.index)
            yield chunk([ChunkChoice(index=delta.index, delta=Delta(), finish_reason=finish)])
    if include_usage:
        yield chunk([], builder.usage())


def _delta(event: ReadEvent) -> Delta:
    """A chunk's delta, as OpenAI streams content and tool calls."""
    if isinstance(event, Content):
        return Delta(content=event.text)
    call = event.call
    if isinstance(event, CallStarted):
        function = FunctionDelta(name=call.name, arguments="")
        return Delta(
            tool_calls=[
                ToolCallDelta(index=call.index, id=call.id, type="function", function=function)
            ]
        )
    assert isinstance(event, ArgumentsAdded)
    return Delta(
        tool_calls=[ToolCallDelta(index=call.index, function=FunctionDelta(arguments=event.text))]
    )
