"""The scout wire protocol: JSON frames over WebSocket, versioned, with size limits.

Kept apart from the hub and the scout node (as hivemind keeps its wire format apart from node
logic): both sides parse with `parse_*` and write with `encode`, nothing else.

    scout -> oracle   hello, draft, pong, resync
    oracle -> scout   welcome, work, cancel, ping

Version 2 streams drafts: after answering a work frame, a scout may send more draft frames
for the same position as it drafts further, each carrying all of its tokens so far (the
previous frame's tokens and at least one more, at most the work's k). The oracle uses the
latest. Version 1 scouts answer each work frame once; the oracle serves both.
"""

from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS: tuple[int, ...] = (1, 2)
"""What the oracle accepts in hello; a scout speaks PROTOCOL_VERSION."""
MAX_SCOUT_FRAME_BYTES = 16 * 1024
"""A scout never needs more than this (a draft of 64 ids); bigger frames close the scout."""
MAX_ORACLE_FRAME_BYTES = 1024 * 1024
"""Work frames carry whole prompts when a scout first syncs a sequence."""
MAX_DRAFT_TOKENS = 64

# WebSocket close codes (4000-4999 are the application's)
CLOSE_BAD_KEY = 4001
CLOSE_BANNED = 4003
CLOSE_PROTOCOL_ERROR = 4008
CLOSE_TOKENIZER_MISMATCH = 4009
CLOSE_REPLACED = 4010
CLOSE_DROPPED = 4011
CLOSE_RESTARTING = 4012
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
"""WebSocket's 'try again later': the model is loading, the swarm is not up, or the key is
past its connect limit. A scout reconnects with backoff."""

ScoutId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
SequenceKey = Annotated[str, Field(min_length=1, max_length=64)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0, lt=2**31)]], Field(max_length=4096)]


class _Frame(BaseModel):
    """Strict JSON types: `"version": "2"` or a token `true` is a protocol error."""

    model_config = ConfigDict(extra="forbid", strict=True)


_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
"""No C0 or C1 control character, nor a line or paragraph separator: each can start a line."""


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    version: int
    scout_id: ScoutId
    tokenizer: str = Field(max_length=128)
    draft_model: str = Field(default="", max_length=200, pattern=_PRINTABLE)
    """Shown in logs: no control characters, so a name cannot write log lines of its own."""
    local_threads: int | None = Field(default=None, ge=1, le=1024)
    """CPU threads the scout drafts with when it runs on the oracle's own machine (absent
    elsewhere, so that oracles from before it serve remote scouts as they did): an oracle on
    its default thread count gives up as many while it is connected, if the connection does
    come from this machine."""


class Draft(_Frame):
    """Draft token ids for positions `position`, `position + 1`, ... of a sequence."""

    type: Literal["draft"] = "draft"
    seq: SequenceKey
    position: int = Field(ge=0)
    tokens: Annotated[list[int], Field(max_length=MAX_DRAFT_TOKENS)]


class Pong(_Frame):
    type: Literal["pong"] = "pong"
    nonce: int


class Resync(_Frame):
    """The scout lost a sequence's state (evicted it): send it the whole history again."""

    type: Literal["resync"] = "resync"
    seq: SequenceKey


class Welcome(_Frame):
    type: Literal["welcome"] = "welcome"
    version: int = PROTOCOL_VERSION
    scout_id: str
    oracle_version: str
    model: str
    tokenizer: str = Field(max_length=128)
    max_draft_tokens: int = MAX_DRAFT_TOKENS


class Work(_Frame):
    """The tokens of a sequence from `position` on (all of them when position is 0); draft
    the `k` tokens that follow, within `deadline_ms`."""

    type: Literal["work"] = "work"
    seq: SequenceKey
    position: int = Field(ge=0)
    tokens: TokenIds
    k: int = Field(ge=1, le=MAX_DRAFT_TOKENS)
    deadline_ms: int = Field(ge=1)


class Cancel(_Frame):
    """The sequence is over: forget it."""

    type: Literal["cancel"] = "cancel"
    seq: SequenceKey


class Ping(_Frame):
    type: Literal["ping"] = "ping"
    nonce: int


ScoutFrame = Annotated[Hello | Draft | Pong | Resync, Field(discriminator="type")]
OracleFrame = Annotated[Welcome | Work | Cancel | Ping, Field(discriminator="type")]
_scout_frames: TypeAdapter[Hello | Draft | Pong | Resync] = TypeAdapter(ScoutFrame)
_oracle_frames: TypeAdapter[Welcome | Work | Cancel | Ping] = TypeAdapter(OracleFrame)


T = TypeVar("T")


class ProtocolError(Exception):
    """A frame that is too big, not JSON, or not a known message: the peer is dropped."""

    def __init__(self, reason: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


def parse_scout_frame(text: str) -> Hello | Draft | Pong | Resync:
    return _parse(_scout_frames, text, MAX_SCOUT_FRAME_BYTES)


def parse_oracle_frame(text: str) -> Welcome | Work | Cancel | Ping:
    return _parse(_oracle_frames, text, MAX_ORACLE_FRAME_BYTES)


def _parse(adapter: TypeAdapter[T], text: str, limit: int) -> T:
    if len(text.encode()) > limit:
        raise ProtocolError(f"frame of {len(text.encode())} bytes is over {limit}", CLOSE_TOO_BIG)
    try:
        return adapter.validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProtocolError(f"malformed frame: {where}: {first['msg']}"[:120]) from error


def encode(frame: _Frame) -> str:
    """The frame as JSON; optional fields left out are absent, not null."""
    return frame.model_dump_json(exclude_none=True)
