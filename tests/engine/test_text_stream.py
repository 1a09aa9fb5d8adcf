"""Stop strings and UTF-8 across token boundaries."""

from shard.engine.text_stream import TextStream


def feed(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.push(piece) for piece in pieces]


def test_plain_text_passes_through() -> None:
    stream = TextStream(())
    assert feed(stream, [b"Hello", b" world"]) == ["Hello", " world"]
    assert stream.flush() == ""


def test_stop_string_split_across_tokens_is_held_then_cut() -> None:
    stream = TextStream(("END",))
    assert feed(stream, [b"abc E", b"N", b"D tail"]) == ["abc ", "", ""]
    assert stream.stopped
    assert stream.push(b"more") == ""
    assert stream.flush() == ""


def test_false_start_of_a_stop_string_is_released() -> None:
    stream = TextStream(("END",))
    assert feed(stream, [b"E", b"N", b"Z"]) == ["", "", "ENZ"]


def test_held_text_is_flushed_when_generation_ends_otherwise() -> None:
    stream = TextStream(("END",))
    assert stream.push(b"xx EN") == "xx "
    assert stream.flush() == "EN"


def test_earliest_of_several_stops_wins() -> None:
    stream = TextStream(("world", "lo"))
    assert stream.push(b"hello world") == "hel"


def test_multibyte_character_split_across_tokens() -> None:
    stream = TextStream(())
    euro = "€".encode()
    assert feed(stream, [euro[:1], euro[1:2], euro[2:] + b"!"]) == ["", "", "€!"]


def test_broken_utf8_is_replaced_not_raised() -> None:
    stream = TextStream(())
    assert stream.push(b"\xff") == "\ufffd"
    assert stream.push("é".encode()[:1]) == ""
    assert stream.flush() == "\ufffd"


def test_tokens_count_as_released_once_their_text_begins_to_go_out() -> None:
    stream = TextStream((" integer",))
    assert feed(stream, [b"5", b" is", b" an", b" int"]) == ["5", " is", " an", ""]
    assert stream.tokens_released == 3  # " int" may be the stop string's start: held
    assert stream.push(b"eger") == ""
    assert stream.stopped and stream.tokens_released == 3  # the stop's tokens never count


def test_a_token_partly_before_a_stop_string_counts() -> None:
    stream = TextStream(("END",))
    assert feed(stream, [b"a", b"bcEN", b"D"]) == ["a", "bc", ""]
    assert stream.tokens_released == 2


def test_flush_counts_every_token_even_one_with_no_text_yet() -> None:
    stream = TextStream(("END",))
    euro = "€".encode()
    assert feed(stream, [b"x E", euro[:1]]) == ["x ", ""]
    assert stream.tokens_released == 1
    assert stream.flush() == "E\ufffd"
    assert stream.tokens_released == 2
