"""Stored completions: owner-only retrieval, streamed ones in the plain shape, list, delete,
the OpenAI SDK's own stored-completion methods, `store: false`, and survival across a
restart."""

from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth, start_oracle, stop_oracle

PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name two planets."}]


def user_key(http: httpx.Client) -> str:
    return str(http.post("/v1/keys", json={"name": "store"}).json()["key"])


def test_completion_is_retrievable_by_its_owner_only(
    oracle: RunningOracle, http: httpx.Client
) -> None:
    owner, stranger = user_key(http), user_key(http)
    client = openai.OpenAI(base_url=oracle.base_url, api_key=owner, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=SERVED_ALIAS,
        messages=PROMPT,
        max_tokens=8,
        temperature=0,
    )
    made = raw.parse()
    got = httpx.get(f"{oracle.base_url}/v1/chat/completions/{made.id}", headers=auth(owner))
    assert got.status_code == 200
    expected = {**raw.http_response.json(), "metadata": {}}
    assert got.json() == expected, "the object the client got, and its metadata"
    refused = httpx.get(f"{oracle.base_url}/chat/completions/{made.id}", headers=auth(stranger))
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    as_admin = httpx.get(f"{oracle.base_url}/chat/completions/{made.id}", headers=auth(ADMIN_KEY))
    assert as_admin.status_code == 200


def test_streamed_completion_is_stored_in_the_plain_shape(
    oracle: RunningOracle, http: httpx.Client
) -> None:
    key = user_key(http)
    client = openai.OpenAI(base_url=oracle.base_url, api_key=key, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=SERVED_ALIAS,
            messages=PROMPT,
            max_tokens=12,
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    stored = httpx.get(
        f"{oracle.base_url}/v1/chat/completions/{chunks[0].id}", headers=auth(key)
    ).json()
    assert stored["object"] == "chat.completion"
    assert stored["id"] == chunks[0].id
    assert stored["choices"][0]["message"] == {
        "role": "assistant",
        "content": text,
        "refusal": None,
    }
    assert stored["choices"][0]["finish_reason"] == "length"
    assert stored["usage"]["completion_tokens"] == 12


def test_list_paginates_the_owners_completions_and_delete_removes(
    oracle: RunningOracle, http: httpx.Client
) -> None:
    key = user_key(http)
    client = openai.OpenAI(base_url=oracle.base_url, api_key=key, max_retries=0)
    ids = [
        client.chat.completions.create(model=SERVED_ALIAS, messages=PROMPT, max_tokens=2).id
        for _ in range(3)
    ]
    with httpx.Client(base_url=oracle.base_url, headers=auth(key)) as mine:
        first = mine.get("/v1/chat/completions", params={"limit": 2}).json()
        assert [c["id"] for c in first["data"]] == ids[:2]
        assert first["has_more"] is True and first["last_id"] == ids[1]
        rest = mine.get("/v1/chat/completions", params={"limit": 2, "after": ids[1]}).json()
        assert [c["id"] for c in rest["data"]] == ids[2:]
        assert rest["has_more"] is False
        newest = mine.get("/v1/chat/completions", params={"order": "desc", "limit": 1}).json()
        assert newest["data"][0]["id"] == ids[2]
        deleted = mine.delete(f"/v1/chat/completions/{ids[0]}").json()
        assert deleted == {"object": "chat.completion.deleted", "id": ids[0], "deleted": True}
        assert mine.get(f"/v1/chat/completions/{ids[0]}").status_code == 404
        assert mine.delete(f"/v1/chat/completions/{ids[0]}").status_code == 404
        assert mine.get("/v1/chat/completions", params={"limit": 0}).status_code == 400
        for cursor in (ids[0], "chatcmpl-nope", ""):  # deleted, unknown, empty
            page = mine.get("/v1/chat/completions", params={"after": cursor})
            assert page.status_code == 400, page.text  # not the first page again
            assert page.json()["error"]["param"] == "after"
        messages = mine.get(f"/v1/chat/completions/{ids[1]}/messages", params={"after": "msg-x"})
        assert messages.status_code == 400 and messages.json()["error"]["param"] == "after"


def test_the_sdk_lists_filters_updates_and_deletes_stored_completions(
    oracle: RunningOracle, http: httpx.Client
) -> None:
    client = openai.OpenAI(base_url=oracle.base_url, api_key=user_key(http), max_retries=0)
    conversation = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Name a planet."}]},
    ]

    def create(**options: object) -> str:
        made = client.chat.completions.create(  # type: ignore[call-overload]
            model=SERVED_ALIAS,
            messages=conversation,
            max_tokens=2,
            **options,
        )
        return str(made.id)

    planets = create(metadata={"topic": "planets", "run": "1"})
    moons = create(metadata={"topic": "moons"})
    unstored = create(store=False)

    def listed(**options: object) -> list[str]:
        return [c.id for c in client.chat.completions.list(limit=1, **options)]  # type: ignore[arg-type]

    assert listed() == [planets, moons]  # every page, one at a time; store: false is not kept
    assert listed(metadata={"topic": "planets"}) == [planets]
    assert listed(metadata={"topic": "planets", "run": "2"}) == []
    assert listed(model=SERVED_ALIAS, order="desc") == [moons, planets]
    assert listed(model="another-model") == []
    for unquotable in ('a"b', "a\x00b", "a\nb"):  # none can be written in a JSON path
        quoted = http.get("/v1/chat/completions", params={f"metadata[{unquotable}]": "x"})
        assert quoted.status_code == 400 and quoted.json()["error"]["param"] == "metadata"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(unstored)
    assert client.chat.completions.retrieve(planets).metadata == {"topic": "planets", "run": "1"}

    updated = client.chat.completions.update(planets, metadata={"topic": "moons"})
    assert updated.id == planets and updated.metadata == {"topic": "moons"}
    assert listed(metadata={"topic": "moons"}) == [planets, moons]

    messages = list(client.chat.completions.messages.list(planets, limit=1))
    assert [m.id for m in messages] == [f"{planets}-0", f"{planets}-1"]
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Answer briefly."),
        ("user", "Name a planet."),
    ]
    assert messages[0].content_parts is None
    assert messages[1].content_parts is not None and messages[1].content_parts[0].type == "text"
    newest_first = client.chat.completions.messages.list(planets, order="desc")
    assert [m.id for m in newest_first.data] == [f"{planets}-1", f"{planets}-0"]

    deleted = client.chat.completions.delete(moons)
    assert (deleted.id, deleted.deleted, deleted.object) == (moons, True, "chat.completion.deleted")
    assert listed() == [planets]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.update(moons, metadata={})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.messages.list(moons)


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
    ],
    ids=["17 pairs", "65-character key", "513-character value"],
)
def test_metadata_over_openais_limits_is_refused(
    oracle: RunningOracle, http: httpx.Client, metadata: dict[str, str]
) -> None:
    client = openai.OpenAI(base_url=oracle.base_url, api_key=user_key(http), max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=SERVED_ALIAS,
            messages=PROMPT,
            max_tokens=1,
            metadata=metadata,
        )
    assert refused.value.param == "metadata"
    made = client.chat.completions.create(model=SERVED_ALIAS, messages=PROMPT, max_tokens=1)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.update(made.id, metadata=metadata)
    assert refused.value.param == "metadata"
    fits = {f"k{i}": "v" * 512 for i in range(16)}
    assert client.chat.completions.update(made.id, metadata=fits).metadata == fits


def test_completion_survives_a_restart(tmp_path: Path) -> None:
    first = start_oracle(tmp_path, "--served-model-name", SERVED_ALIAS)
    try:
        made = first.client(max_retries=0).chat.completions.create(
            model=SERVED_ALIAS,
            messages=PROMPT,
            max_tokens=4,
        )
    finally:
        stop_oracle(first)
    second = start_oracle(tmp_path, "--served-model-name", SERVED_ALIAS)
    try:
        got = httpx.get(f"{second.base_url}/v1/chat/completions/{made.id}", headers=auth(ADMIN_KEY))
        assert got.status_code == 200
        assert got.json()["choices"][0]["message"]["content"] == made.choices[0].message.content
    finally:
        stop_oracle(second)


@pytest.mark.parametrize("path", ["/v1/chat/completions/chatcmpl-missing"])
def test_unknown_completion_is_404(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
