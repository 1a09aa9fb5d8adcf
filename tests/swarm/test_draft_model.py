"""The scout's draft model on the real embedded model: it drafts ahead of what the oracle
decided, keeps what the oracle then decides the same way, and rewinds to the first token that
differs, leaving a cache that drafts exactly as a fresh one would."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from shard.default_model import default_model_path
from shard.engine.llama_model import Batch
from shard.swarm.draft_model import DraftModel


@pytest.fixture(scope="module")
def model() -> Iterator[DraftModel]:
    loaded = DraftModel(default_model_path(), n_ctx=256, slots=3, threads=1)
    yield loaded
    loaded.close()


def test_drafts_run_ahead_and_survive_what_the_oracle_decides(model: DraftModel) -> None:
    prompt = model.model.tokenize("The first three planets of the solar system are")
    start, first = model.draft("a", 0, prompt, 4)
    assert start == len(prompt) and len(first) == 4
    assert model.draft("a", start, [], 8, at_least=1) == (start, first)  # what is ahead
    while model.run_ahead(12) is not None:
        pass
    assert model.run_ahead(12) is None  # far enough ahead: nothing to do
    assert model.ahead("a")[0] == start and len(model.ahead("a")[1]) == 12
    start, drafted = model.draft("a", start, [], 12)
    assert drafted[:4] == first and len(drafted) == 12

    model.sync("a", start, drafted[:5])  # the oracle accepted five of them
    start, rest = model.draft("a", start + 5, [], 7)
    assert rest == drafted[5:12]  # answered from what was drafted ahead

    other = (rest[0] + 1) % model.n_vocab  # the oracle decided otherwise at the next token
    model.sync("a", start, [rest[0], rest[1], other])
    decided = [*prompt, *drafted[:5], rest[0], rest[1], other]
    _, after_rewind = model.draft("a", len(decided), [], 6)
    _, fresh = model.draft("b", 0, decided, 6)
    assert after_rewind == fresh


def test_the_oracle_s_tokens_arriving_mid_draft_leave_a_cache_that_drafts_as_a_fresh_one(
    model: DraftModel,
) -> None:
    """Work is synced on the event loop while the model thread drafts: a rewind that lands
    during a decode discards that token, and the next drafts equal a fresh slot's."""
    prompt = model.model.tokenize("Rivers flow from the mountains down to")
    start, _ = model.draft("c", 0, prompt, 4)
    decided = list(prompt)
    with ThreadPoolExecutor(1) as model_thread:
        for round_ in range(6):
            running = model_thread.submit(model.run_ahead, 16)
            start, ahead = model.answer("c", start, [], 16)
            wrong = ((ahead[0] if ahead else 0) + 1 + round_) % model.n_vocab
            model.sync("c", start, [wrong])  # the oracle decided otherwise, mid-draft maybe
            decided.append(wrong)
            start += 1
            running.result()
    _, after = model.draft("c", start, [], 6)
    _, fresh = model.draft("d", 0, decided, 6)
    assert after == fresh
    assert model.answer("c", start, [], 16) == (start, after)  # answering drafts nothing


def test_a_decode_the_oracle_s_tokens_agree_with_is_kept_when_they_land_mid_decode(
    model: DraftModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scout no faster than the oracle is told each decided token while it decodes the one
    before. When the news agrees with what was decoded, the decode is kept: the next draft
    decodes one new token, not the last two again (which left it behind for good)."""
    for key in ("a", "b", "c", "d"):
        model.forget(key)
    prompt = model.model.tokenize("The four seasons of the year are")
    _, truth = model.draft("truth", 0, prompt, 3)
    model.forget("truth")
    model.draft("e", 0, prompt, 1)
    model.sync("e", len(prompt), truth[:1])  # the oracle decided the scout's draft
    decoded: list[int] = []
    real_decode = model.model.decode

    def decode_then_hear_the_oracle(batch: Batch) -> None:
        decoded.append(len(batch))
        real_decode(batch)
        if len(decoded) == 1:  # the oracle's next token lands during this decode
            model.sync("e", len(prompt) + 1, truth[1:2])

    monkeypatch.setattr(model.model, "decode", decode_then_hear_the_oracle)
    assert model.run_ahead(4) == "e"
    assert model.ahead("e") == (len(prompt) + 2, [])  # its token was decided meanwhile
    assert model.run_ahead(4) == "e"
    assert decoded == [1, 1]  # the second decode is the newly decided token alone
    assert model.ahead("e") == (len(prompt) + 2, truth[2:3])
    model.forget("e")


def test_leads_are_kept_even_across_sequences(model: DraftModel) -> None:
    """The oracle verifies drafts (on a CPU) only in steps where every sequence has one, so
    the scout extends the sequence it is least far ahead on: two sequences the oracle has
    just synced, one already 5 tokens ahead, end level instead of one going deep."""
    for key in ("x", "y", "z"):
        model.forget(key)
    model.draft("x", 0, model.model.tokenize("Cats sleep most of the day because"), 5)
    model.sync("y", 0, model.model.tokenize("The capital of France is"))
    model.sync("z", 0, model.model.tokenize("Water boils at a temperature of"))
    extended = [model.run_ahead(8) for _ in range(13)]
    leads = {key: len(model.ahead(key)[1]) for key in ("x", "y", "z")}
    assert "x" not in extended[:10]  # x was 5 ahead: y and z catch up first
    assert leads == {"x": 6, "y": 6, "z": 6}
    for key in ("x", "y", "z"):
        model.forget(key)


def test_an_owed_answer_is_drafted_first_among_sequences_as_far_ahead(model: DraftModel) -> None:
    """A sequence whose answer is owed (sent with its first token) goes before others with
    as little ahead, which otherwise go least recently synced first."""
    model.sync("p", 0, model.model.tokenize("One day I will"))
    model.sync("q", 0, model.model.tokenize("Two birds sat on"))
    assert model.run_ahead(4, owed={"q"}) == "q"
    assert model.run_ahead(4) == "p"
    for key in ("p", "q"):
        model.forget(key)
