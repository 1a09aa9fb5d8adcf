"""Predicted Outputs on the real model through the official client: the answer is the same
with and without a prediction, and usage says how much of the prediction was accepted."""

from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import SERVED_ALIAS

CODE = """def greet(name):
    message = "Hello, " + name + "!"
    print(message)
    return message


def farewell(name):
    message = "Goodbye, " + name + "."
    print(message)
    return message
"""
EDIT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": f"Rename the function greet to welcome:\n\n{CODE}"}
]


def answer(client: openai.OpenAI, **options: Any) -> Any:
    return client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=EDIT,
        temperature=0,
        max_tokens=90,
        **options,
    )


def test_a_prediction_changes_nothing_and_its_accepted_tokens_are_counted(
    client: openai.OpenAI,
) -> None:
    plain = answer(client)
    text = plain.choices[0].message.content
    assert plain.usage.completion_tokens_details is None  # no prediction, no details
    predicted = answer(client, prediction={"type": "content", "content": text})
    assert predicted.choices[0].message.content == text
    details = predicted.usage.completion_tokens_details
    # the answer's own text: nearly all of it appears (the model's tokens and the prediction
    # tokenized afresh may part at a few places)
    assert details.accepted_prediction_tokens > 8 * details.rejected_prediction_tokens
    parts = [{"type": "text", "text": text[:40]}, {"type": "text", "text": text[40:]}]
    in_parts = answer(client, prediction={"type": "content", "content": parts})
    assert in_parts.choices[0].message.content == text
    assert in_parts.usage.completion_tokens_details.accepted_prediction_tokens > 0

    streamed = answer(
        client,
        prediction={"type": "content", "content": "nothing like the answer " * 8},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens_details.accepted_prediction_tokens < 10


def test_a_prediction_that_is_not_content_is_a_400(http: httpx.Client) -> None:
    body = {"model": SERVED_ALIAS, "messages": EDIT, "prediction": {"type": "text", "content": "x"}}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prediction.type"
