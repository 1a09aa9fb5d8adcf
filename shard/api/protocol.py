"""OpenAI Chat Completions wire types (requests and responses), separate from engine types.

Unknown fields are refused (as OpenAI does), and fields Shard cannot honour are refused by
name, so nothing a client asks for is silently dropped.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

from shard.engine.constraint import GrammarError, json_grammar

Role = Literal["system", "developer", "user", "assistant"]
_ROLES = ("system", "developer", "user", "assistant")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class ChatMessageIn(_Strict):
    role: Role
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, role: Any) -> Any:
        if role in ("tool", "function"):
            raise ValueError(f"'{role}' messages are not supported: Shard has no tool calling")
        if role not in _ROLES:
            raise ValueError(f"role must be one of {', '.join(_ROLES)}")
        return role

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        if isinstance(content, str):
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

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def stored(self) -> dict[str, Any]:
        """As GET /chat/completions/{id}/messages lists it (without its id)."""
        parts = None if isinstance(self.content, str) else [p.model_dump() for p in self.content]
        return {
            "role": self.role,
            "content": self.text(),
            "name": self.name,
            "content_parts": parts,
        }


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


class _SamplingRequest(_Strict):
    """Fields and checks that chat and legacy completions share."""

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=128)
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

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (bias or {}).items():
            if not key.lstrip("-").isdigit():
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
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    metadata: Metadata = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Accepted only in their "off" form; anything else is refused by name below.
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: ResponseFormat | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None

    @field_validator("messages", mode="before")
    @classmethod
    def _not_empty(cls, messages: Any) -> Any:
        if isinstance(messages, list) and not messages:
            raise ValueError("messages must contain at least one message")
        return messages

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("tool and function calling are not supported by Shard")
        return tools

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, choice: Any) -> Any:
        if choice not in (None, "none"):
            raise ValueError("tool and function calling are not supported by Shard")
        return choice

    @field_validator("modalities")
    @classmethod
    def _text_modality(cls, modalities: list[str] | None) -> list[str] | None:
        if modalities is not None and modalities != ["text"]:
            raise ValueError("only the 'text' modality is supported")
        return modalities

    @field_validator("audio", "prediction", "web_search_options", "reasoning_effort", "verbosity")
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


class CompletionRequest(_SamplingRequest):
    """POST /completions, the legacy text API (LlamaIndex's OpenAILike uses it by default).
    Its default max_tokens is 16, as OpenAI's is."""

    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None
    logprobs: int | None = None

    @field_validator("prompt")
    @classmethod
    def _one_text_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("send one prompt per request")
        return prompt

    @field_validator("echo", "logprobs", "suffix")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value not in (None, False):
            raise ValueError("this parameter is not supported by Shard's legacy completions")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("best_of other than 1 is not supported")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


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


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    """Prompt tokens reused from the prefix cache instead of computed again."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    """Only the fields a chunk sets, as OpenAI sends them (`{}` on the finishing chunk)."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer
    def _set_fields_only(self) -> dict[str, str]:
        return {k: v for k, v in (("role", self.role), ("content", self.content)) if v is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


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


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
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
