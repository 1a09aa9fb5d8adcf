"""OpenAI Chat Completions wire types (requests and responses), separate from engine types.

Unknown fields are refused (as OpenAI does), and fields Shard cannot honour are refused by
name, so nothing a client asks for is silently dropped.
"""

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from shard.engine.constraint import GrammarError, json_grammar

Role = Literal["system", "developer", "user", "assistant", "tool"]
MAX_CHOICES = 128
"""The most choices one request may ask for: `n`, or prompts times `n` in legacy ones."""
MAX_TOP_LOGPROBS = 20
"""The most alternatives a token's logprob may come with (chat `top_logprobs`, legacy
`logprobs`)."""

_ROLES = ("system", "developer", "user", "assistant", "tool")


class _Strict(BaseModel):
    """A request body: unknown fields and wrong JSON types are 400s, as in OpenAI's API
    (pydantic's lax mode would take `"stream": "yes"` as true and `"max_tokens": true` as 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits on `metadata`: 16 pairs, keys up to 64 characters, values up to 512."""
    if metadata is None:
        return None
    if len(metadata) > METADATA_PAIRS:
        raise ValueError(f"at most {METADATA_PAIRS} key-value pairs are allowed")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            raise ValueError(
                f"keys are at most {METADATA_KEY_CHARS} characters, '{key[:70]}' is longer"
            )
        if len(value) > METADATA_VALUE_CHARS:
            raise ValueError(
                f"values are at most {METADATA_VALUE_CHARS} characters; '{key}' has {len(value)}"
            )
    return metadata


Metadata = Annotated[dict[str, str] | None, AfterValidator(check_metadata)]


class FunctionCallIn(_Strict):
    name: str
    arguments: str


class ToolCallIn(_Strict):
    """A call from an earlier assistant turn, sent back with the conversation."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


_NULL_ONLY = {
    "audio": "audio is not supported",
    "function_call": "the deprecated functions API is not supported: use tool_calls",
}


class ChatMessageIn(_Strict):
    role: Role
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    """An assistant turn's calls."""
    tool_call_id: str | None = None
    """A tool result's call."""
    content: str | list[TextPart] | None = Field(default=None, validate_default=True)
    refusal: str | None = None
    """Sent back as the SDKs serialise an assistant message; not used."""
    annotations: list[Any] | None = None
    """The same (`message.model_dump()` of an answer): citations of OpenAI's web search; not
    used."""
    audio: Any = None
    function_call: Any = None
    """The deprecated functions API's call, or audio output: only null, as the SDKs send them."""

    @field_validator("audio", "function_call")
    @classmethod
    def _null_only(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if value is not None:
            raise ValueError(f"{_NULL_ONLY[name]}; send {name} as null or leave it out")
        return value

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, role: Any) -> Any:
        if role == "function":
            raise ValueError(
                "'function' messages (the deprecated functions API) are not supported: use "
                "tools and 'tool' messages"
            )
        if role not in _ROLES:
            raise ValueError(f"role must be one of {', '.join(_ROLES)}")
        return role

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        if content is None or isinstance(content, str):
            return content
        if not isinstance(content, list):
            raise ValueError("content must be a string or a list of text parts")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise ValueError(
                    f"content parts of type '{kind}' are not supported; only 'text' parts are"
                )
            if not isinstance(part.get("text"), str):
                raise ValueError("a text part needs a string 'text'")
        return content

    @model_validator(mode="after")
    def _fields_of_its_role(self) -> "ChatMessageIn":
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs the 'tool_call_id' it answers")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError("only 'tool' messages carry a tool_call_id")
        return self

    @field_validator("content")
    @classmethod
    def _present_unless_calling(cls, content: Any, info: ValidationInfo) -> Any:
        if content is None and not (
            info.data.get("role") == "assistant" and info.data.get("tool_calls")
        ):
            raise ValueError(
                "content is required (only an assistant turn with tool_calls may leave it out)"
            )
        return content

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text for part in self.content)

    def stored(self) -> dict[str, Any]:
        """As GET /chat/completions/{id}/messages lists it (without its id)."""
        parts = [p.model_dump() for p in self.content] if isinstance(self.content, list) else None
        stored: dict[str, Any] = {
            "role": self.role,
            "content": None if self.content is None else self.text(),
            "name": self.name,
            "content_parts": parts,
        }
        if self.tool_calls:
            stored["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            stored["tool_call_id"] = self.tool_call_id
        return stored


class Prediction(_Strict):
    """Predicted Outputs: text the answer is expected to repeat, as a string or text parts."""

    type: Literal["content"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _an_object(cls, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        """Arguments are a JSON object, as OpenAI requires (a call's reader finds where an
        object ends, not a bare number or string)."""
        kind = (parameters or {}).get("type", "object")
        if kind != "object":
            raise ValueError(f"must be a JSON Schema of type 'object', got type {kind!r}")
        for keyword in ("$defs", "definitions"):
            if not isinstance((parameters or {}).get(keyword, {}), dict):
                raise ValueError(f"'{keyword}' must be an object of named schemas")
        return parameters


class ToolDefinition(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class ChosenFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: ChosenFunction


class JsonSchemaFormat(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(_Strict):
    """`text`, any JSON object, or JSON matching a schema; the grammar is compiled here, so a
    schema the constraint library cannot compile is a 400 naming `response_format`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None
    _grammar: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object")
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f"'json_schema' goes with type 'json_schema', not '{self.type}'")
        try:
            if self.type == "json_object":
                self._grammar = json_grammar(None)
            elif self.json_schema is not None:
                spec = self.json_schema
                self._grammar = json_grammar(spec.json_schema or {}, bool(spec.strict))
        except GrammarError as error:
            raise ValueError(f"the schema cannot be used: {error}") from error
        return self

    @property
    def grammar(self) -> str | None:
        """The grammar output must follow; None for plain text."""
        return self._grammar


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None
    """OpenAI pads its events against length side channels; taken, and Shard does not pad."""


_TOKEN_ID = re.compile(r"-?[0-9]{1,12}")
"""A token id as a JSON key. Twelve digits pass any vocabulary (the engine then says which
ids are past this model's); many more would be slow for `int()`, which refuses over 4300."""


class _SamplingRequest(_Strict):
    """Fields and checks that chat and legacy completions share."""

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return stop

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(
        cls, options: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if options is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")  # OpenAI's rule
        return options

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (bias or {}).items():
            if not _TOKEN_ID.fullmatch(key):  # str.isdigit() takes '²', which int() refuses
                raise ValueError(f"keys must be token ids, got '{key}'")
            if not -100.0 <= value <= 100.0:
                raise ValueError(f"bias for token {key} must be between -100 and 100")
        return bias

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def completion_limit(self) -> int | None:
        return self.max_tokens


class ChatCompletionRequest(_SamplingRequest):
    """POST /chat/completions. Defaults follow the spec: temperature 0.7, max_tokens 500."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    metadata: Metadata = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    # Accepted only in their "off" form; anything else is refused by name below.
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: ResponseFormat | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Prediction | None = None
    web_search_options: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None

    @field_validator("messages", mode="before")
    @classmethod
    def _not_empty(cls, messages: Any) -> Any:
        if isinstance(messages, list) and not messages:
            raise ValueError("messages must contain at least one message")
        return messages

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs to be true")  # OpenAI's rule
        return top

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, functions: list[Any] | None) -> list[Any] | None:
        if functions:
            raise ValueError("the deprecated functions API is not supported: use tools")
        return functions

    @field_validator("function_call")
    @classmethod
    def _no_function_call(cls, choice: Any) -> Any:
        if choice not in (None, "none"):
            raise ValueError("the deprecated functions API is not supported: use tool_choice")
        return choice

    @field_validator("tools")
    @classmethod
    def _distinct_names(cls, tools: list[ToolDefinition] | None) -> list[ToolDefinition] | None:
        names = [tool.function.name for tool in tools or []]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"function names must be distinct: {', '.join(repeated)}")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _choice_among_tools(cls, choice: Any, info: ValidationInfo) -> Any:
        tools = info.data.get("tools") or []
        names = {tool.function.name for tool in tools}
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"it names '{choice.function.name}', which is not in tools")
        if choice == "required" and not names:
            raise ValueError("'required' needs tools")
        return choice

    def tool_mode(self) -> str | None:
        """None (no calls), "auto", "required", or the name of the function to call."""
        choice = self.tool_choice
        if not self.tools or choice == "none":
            return None
        if isinstance(choice, NamedToolChoice):
            return choice.function.name
        return choice or "auto"

    @field_validator("modalities")
    @classmethod
    def _text_modality(cls, modalities: list[str] | None) -> list[str] | None:
        if modalities is not None and modalities != ["text"]:
            raise ValueError("only the 'text' modality is supported")
        return modalities

    @field_validator("audio", "web_search_options", "reasoning_effort", "verbosity")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("this parameter is not supported by Shard")
        return value

    def completion_limit(self) -> int | None:
        """max_completion_tokens wins over the older max_tokens; None means the default."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


MAX_PROMPTS = 64
"""Prompts one legacy completion may carry (LangChain sends up to 20 by default); each is
one request in flight, and the default capacity is 72."""


_Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(_SamplingRequest):
    """POST /completions, the legacy text API (LlamaIndex's OpenAILike uses it by default).
    Its default max_tokens is 16, as OpenAI's is."""

    prompt: _Prompt
    """Text, texts, token ids (used as they are, no BOS added), or lists of them."""
    echo: bool | None = None
    """Put the prompt before each choice's text (and its tokens before the logprobs)."""
    best_of: int | None = None
    suffix: str | None = None
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    """Each token's logprob and this many likeliest alternatives (OpenAI allows 5, vLLM 20)."""

    @field_validator("prompt")
    @classmethod
    def _prompt_count(cls, prompt: _Prompt, info: ValidationInfo) -> _Prompt:
        """Each prompt is one request to the engine, so a list is bounded like `n`."""
        prompts = _prompt_list(prompt)
        if not prompts:
            raise ValueError("send at least one prompt")
        for ids in (item for item in prompts if isinstance(item, list)):
            if not ids:
                raise ValueError("a prompt of token ids needs one at least")
            if min(ids) < 0:
                raise ValueError("token ids are not negative")
        count = len(prompts)
        if count > MAX_PROMPTS:
            raise ValueError(f"send at most {MAX_PROMPTS} prompts per request")
        n = info.data.get("n") or 1
        if count * n > MAX_CHOICES:
            raise ValueError(f"prompts times n is {count * n}; at most {MAX_CHOICES} choices")
        return prompt

    @field_validator("suffix")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("suffix (insertion) is not supported by Shard's legacy completions")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("best_of other than 1 is not supported")
        return value

    def prompts(self) -> list[str | list[int]]:
        return _prompt_list(self.prompt)


def _prompt_list(prompt: _Prompt) -> list[str | list[int]]:
    """The prompts one body carries: a text or a list of token ids is one."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return [prompt]
    return list(prompt)  # type: ignore[arg-type]


# -- responses --------------------------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: None = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str
    """JSON text, as OpenAI sends it."""


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None

    @model_serializer(mode="wrap")
    def _calls_only_when_made(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`tool_calls` appears only on a message that makes calls, as in OpenAI's answers."""
        data: dict[str, Any] = handler(self)
        if self.tool_calls is None:
            data.pop("tool_calls", None)
        return data


ChatFinishReason = Literal["stop", "length", "tool_calls"]


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: ChatFinishReason


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    """Prompt tokens reused from the prefix cache instead of computed again."""


class CompletionTokensDetails(BaseModel):
    accepted_prediction_tokens: int = 0
    """Prediction tokens that appeared in the completion, in order."""
    rejected_prediction_tokens: int = 0
    """Prediction tokens that did not."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    """Set when the request carried a prediction."""


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage


class FunctionDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """A call's first chunk has its id, type and name; later ones add argument text."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta | None = None


class Delta(BaseModel):
    """Only the fields a chunk sets, as OpenAI sends them (`{}` on the finishing chunk)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_nones(handler(self))


def _without_nones(value: dict[str, Any]) -> dict[str, Any]:
    """The dict, and the dicts in it, without their None values."""
    return {k: _pruned(v) for k, v in value.items() if v is not None}


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return _without_nones(value)
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: ChatFinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "shard"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["healthy", "loading", "draining"]
    timestamp: int
    """Unix seconds, as every timestamp in a body."""
    version: str


class TextLogprobs(BaseModel):
    """The legacy shape: parallel lists, one entry per token. The prompt's first token (with
    `echo`) has no logprob; each `top_logprobs` entry holds the sampled token too, so it may
    have one more than asked. `text_offset` counts characters from the prompt's start."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: TextLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[TextChoice]
    usage: Usage | None = None


class CompletionUpdate(_Strict):
    """POST /chat/completions/{id}: only the metadata of a stored completion can change."""

    metadata: Metadata
