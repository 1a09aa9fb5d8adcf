"""The wire format: what parses, and what closes a scout."""

import json

import pytest

from shard.swarm.protocol import (
    CLOSE_TOO_BIG,
    MAX_SCOUT_FRAME_BYTES,
    Draft,
    Hello,
    ProtocolError,
    Work,
    encode,
    parse_oracle_frame,
    parse_scout_frame,
)


def test_scout_frames_round_trip() -> None:
    hello = Hello(version=1, scout_id="box-1", tokenizer="ab" * 32, draft_model="m.gguf")
    assert parse_scout_frame(encode(hello)) == hello
    draft = Draft(seq="s1", position=7, tokens=[1, 2, 3])
    assert parse_scout_frame(encode(draft)) == draft


def test_hello_says_local_threads_only_on_the_oracles_machine() -> None:
    """A scout elsewhere sends the hello of before (an older oracle forbids unknown fields);
    one on the oracle's machine adds its CPU threads."""
    remote = Hello(version=2, scout_id="far", tokenizer="ab" * 32)
    assert set(json.loads(encode(remote))) == {
        "type",
        "version",
        "scout_id",
        "tokenizer",
        "draft_model",
    }
    local = Hello(version=2, scout_id="here", tokenizer="ab" * 32, local_threads=1)
    assert json.loads(encode(local))["local_threads"] == 1
    assert parse_scout_frame(encode(local)) == local
    with pytest.raises(ProtocolError, match="local_threads"):
        parse_scout_frame(encode(local).replace('"local_threads":1', '"local_threads":0'))


def test_oracle_frames_round_trip() -> None:
    work = Work(seq="s1", position=0, tokens=[2, 3], k=8, deadline_ms=500)
    assert parse_oracle_frame(encode(work)) == work


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        json.dumps({"type": "nonsense"}),
        json.dumps({"type": "draft", "seq": "s", "position": -1, "tokens": []}),
        json.dumps({"type": "draft", "seq": "s", "position": 0, "tokens": ["a"]}),
        json.dumps({"type": "draft", "seq": "s", "position": 0, "tokens": list(range(65))}),
        json.dumps({"type": "draft", "seq": "s", "position": 0, "tokens": [], "extra": 1}),
        json.dumps({"type": "hello", "version": 1, "scout_id": "bad id!", "tokenizer": "x"}),
        # strict JSON types: lax parsing took each of these
        json.dumps({"type": "hello", "version": "2", "scout_id": "a", "tokenizer": "x"}),
        json.dumps({"type": "hello", "version": 2.0, "scout_id": "a", "tokenizer": "x"}),
        json.dumps({"type": "draft", "seq": "s", "position": "0", "tokens": [1]}),
        json.dumps({"type": "draft", "seq": "s", "position": 0, "tokens": [True, "7", 2.0]}),
        json.dumps({"type": "pong", "nonce": True}),
        # a draft model's name is logged: no line breaks of its own (C0, C1, U+2028)
        *(
            json.dumps(
                {
                    "type": "hello",
                    "version": 2,
                    "scout_id": "a",
                    "tokenizer": "x",
                    "draft_model": f"m{breaks}X",
                }
            )
            for breaks in ("\n", "\x85", "\x9b", "\u2028", "\u2029")
        ),
    ],
)
def test_malformed_frames_are_protocol_errors(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_scout_frame(text)


def test_oversized_frames_close_with_1009() -> None:
    text = json.dumps({"type": "pong", "nonce": 1, "pad": "x" * MAX_SCOUT_FRAME_BYTES})
    with pytest.raises(ProtocolError) as raised:
        parse_scout_frame(text)
    assert raised.value.close_code == CLOSE_TOO_BIG
