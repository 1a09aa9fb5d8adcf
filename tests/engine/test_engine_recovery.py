"""A failing decode answers the affected requests with an error; the engine keeps serving."""

import asyncio

import pytest

from shard.default_model import default_model_path
from shard.engine.engine import EngineConfig
from shard.engine.scheduler import RequestRejectedError, Scheduler
from shard.engine.types import ChatMessage, GenerationRequest, SamplingParams


def request(request_id: str) -> GenerationRequest:
    return GenerationRequest(
        request_id,
        (ChatMessage("user", "Hi"),),
        SamplingParams(seed=1, temperature=0.0),
        max_tokens=4,
    )


async def run(scheduler: Scheduler, request_id: str) -> int:
    tokens = 0
    async with scheduler.generate(request(request_id)) as generation:
        async for delta in generation.deltas():
            tokens = delta.completion_tokens
    return tokens


def test_a_failed_step_fails_its_requests_and_the_engine_recovers() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(EngineConfig(default_model_path(), 256, 2, 64, 2), max_queue=4)
        await scheduler.start()
        try:
            model = scheduler.engine._model
            real_decode = model.decode
            failures = iter([RuntimeError("injected")])

            def flaky_decode(batch: object) -> None:
                error = next(failures, None)
                if error is not None:
                    raise error
                real_decode(batch)  # type: ignore[arg-type]

            model.decode = flaky_decode  # type: ignore[method-assign]
            with pytest.raises(RequestRejectedError) as caught:
                await asyncio.wait_for(run(scheduler, "doomed"), 60)
            assert caught.value.rejection.code == "internal_error"
            assert await asyncio.wait_for(run(scheduler, "fine"), 60) == 4
        finally:
            await scheduler.stop()

    asyncio.run(scenario())
