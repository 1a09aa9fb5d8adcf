"""GET /metrics and GET /system/status through the real server."""

import httpx
import openai

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_and_tokens(oracle: RunningOracle, client: openai.OpenAI) -> None:
    before = httpx.get(oracle.base_url + "/metrics").text
    response = client.chat.completions.create(
        model=SERVED_ALIAS, messages=[{"role": "user", "content": "Hi"}], max_tokens=6
    )
    assert response.usage is not None
    after = httpx.get(oracle.base_url + "/v1/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert (
        metric(text, 'shard_chat_requests_total{outcome="ok"}')
        == metric(before, 'shard_chat_requests_total{outcome="ok"}') + 1
    )
    assert (
        metric(text, "shard_completion_tokens_total")
        - metric(before, "shard_completion_tokens_total")
        == response.usage.completion_tokens
    )
    assert "shard_chat_request_seconds_bucket" in text
    assert "shard_time_to_first_token_seconds_count" in text
    assert "shard_scouts_connected 0.0" in text
    assert "shard_requests_in_flight" in text


def test_system_status_reports_model_and_performance(
    oracle: RunningOracle, http: httpx.Client
) -> None:
    http.post(
        "/v1/chat/completions",
        json={
            "model": SERVED_ALIAS,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
        },
    )
    response = http.get("/v1/system/status")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "operational"
    assert body["version"]
    assert body["model"]["aliases"] == [SERVED_ALIAS]
    assert body["model"]["chat_template"] == "built-in gemma"
    assert body["model"]["drafts_exact"] is True  # Q4_K_M on this build: measured at start
    assert body["model"]["prefix_cache_tokens"] == 4 * 2048  # on: all 4 sequences may keep
    assert body["scouts"]["connected"] == 0
    compute = body["compute"]  # this machine's build has no GPU backend
    assert (compute["backend"], compute["gpu_layers"]) == ("CPU", 0)
    assert "cpu" in {device["type"] for device in compute["devices"]}
    load = body["load"]
    assert load["running_sequences"] >= 0 and load["queued_requests"] >= 0
    history = body["history"]  # the dashboard's chart: ten minutes, this one last
    assert len(history) == 10 and history[-1]["requests"] >= 1 and history[-1]["tokens"] >= 3
    assert [m["minute"] for m in history] == sorted(m["minute"] for m in history)
    for counts in body["drafts"].values():
        assert counts["accepted"] <= counts["proposed"]
    performance = body["performance"]
    assert performance["requests_per_minute"] >= 1
    assert performance["tokens_per_second"] > 0
    assert performance["average_latency_ms"] > 0
    assert performance["uptime_seconds"] > 0
    assert ADMIN_KEY not in response.text
    assert "sk-oracle-" not in response.text
    assert httpx.get(oracle.base_url + "/system/status").status_code == 401
