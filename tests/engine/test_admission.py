"""Admission refuses a prompt that cannot fit before tokenizing it, by a bound that never
refuses one that fits: a token stands for at most `max_token_bytes` bytes of text."""

from collections.abc import Iterator

import pytest

from shard.default_model import default_model_path
from shard.engine.admission import prepare
from shard.engine.chat_template import ChatTemplate
from shard.engine.llama_model import ContextShape, LlamaModel
from shard.engine.sequence import Task
from shard.engine.types import ChatMessage, GenerationRequest, Rejected, SamplingParams
from tests.fake_model import FakeModel

N_CTX = 64


class CountingModel(FakeModel):
    """Counts the characters it is asked to tokenize."""

    def __init__(self) -> None:
        super().__init__()
        self.tokenized: list[int] = []

    def tokenize(self, text: str) -> list[int]:
        self.tokenized.append(len(text))
        return super().tokenize(text)


def legacy(prompt: str, prediction: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        "r",
        (),
        SamplingParams(seed=1),
        8,
        shrink_to_fit=True,
        raw_prompt=prompt,
        prediction=prediction,
    )


def test_a_prompt_beyond_the_bound_is_refused_without_tokenizing() -> None:
    model = CountingModel()
    refused = prepare(legacy("x" * 4 * N_CTX), model, ChatTemplate(builtin="gemma"), N_CTX, 1)
    assert isinstance(refused, Rejected) and refused.code == "context_length_exceeded"
    assert refused.param == "prompt"
    assert f"at least {N_CTX} tokens" in refused.message
    assert model.tokenized == []


def test_a_prompt_under_the_bound_is_tokenized_and_judged_by_its_count() -> None:
    model = CountingModel()  # one token per character, so 4x the bound in ASCII
    template = ChatTemplate(builtin="gemma")
    refused = prepare(legacy("x" * (N_CTX + 5)), model, template, N_CTX, 1)
    assert isinstance(refused, Rejected) and f"in {N_CTX + 6} tokens" in refused.message
    assert model.tokenized == [N_CTX + 5]
    assert isinstance(prepare(legacy("x" * (N_CTX - 9)), model, template, N_CTX, 1), Task)


def test_a_long_prediction_is_cut_before_tokenizing_and_keeps_a_context_of_tokens() -> None:
    model = CountingModel()
    task = prepare(
        legacy("hi", prediction="y" * 10**6), model, ChatTemplate(builtin="gemma"), N_CTX, 1
    )
    assert isinstance(task, Task)
    assert model.tokenized[-1] == 4 * (N_CTX + 16)
    assert len(task.prediction) == N_CTX


@pytest.fixture(scope="module")
def gemma() -> Iterator[LlamaModel]:
    loaded = LlamaModel(default_model_path(), ContextShape(64, 1, 64, 1))
    yield loaded
    loaded.close()


@pytest.mark.parametrize(
    "text",
    [
        " " * 5000,  # Gemma has tokens of 31 spaces
        "\u2026" * 2000,  # and of 16 ellipses, its longest (48 bytes)
        "<start_of_turn>" * 300,  # special tokens are parsed: 15 bytes in one token
        "\n" * 3000 + "\t" * 3000,
        "ab" * 3000,
        "\U0001f600" * 1000,  # byte fallback
    ],
)
def test_the_real_tokenizer_keeps_within_its_bound(gemma: LlamaModel, text: str) -> None:
    bound = gemma.max_token_bytes
    assert bound is not None and bound >= 31
    text_tokens = len(gemma.tokenize(text)) - 1  # less BOS
    assert text_tokens * bound >= len(text.encode())


def test_a_chat_beyond_the_bound_on_the_real_model_names_the_messages(gemma: LlamaModel) -> None:
    bound = gemma.max_token_bytes
    assert bound is not None
    messages = (ChatMessage("user", "word " * (bound * N_CTX // 5)),)
    request = GenerationRequest("r", messages, SamplingParams(seed=1), 8, shrink_to_fit=True)
    refused = prepare(request, gemma, ChatTemplate(builtin="gemma"), N_CTX, 1)
    assert isinstance(refused, Rejected) and refused.param == "messages"
    assert "at least" in refused.message
