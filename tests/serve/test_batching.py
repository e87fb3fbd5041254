"""Micro-batching: the batcher on its own (a fake model), then concurrent /predict requests on the real app."""

import asyncio
import io

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from fluid.serve import create_app
from fluid.serve.batching import MicroBatcher

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), COLOURS[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------- the batcher alone
def _squares(calls: list):
    def run(items):
        calls.append(list(items))
        if any(item < 0 for item in items):
            raise ValueError(f"negative item in {items}")
        return [item * item for item in items]
    return run


def test_batcher_gathers_concurrent_items_in_order():
    calls = []

    async def main():
        batcher = MicroBatcher(_squares(calls), max_batch_size=4, max_wait_ms=1000)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return results, batcher.stats.to_dict()

    results, stats = asyncio.run(main())
    assert results == [i * i for i in range(10)]
    # every submit is queued before the worker first runs, so batches are full except the last
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert stats["requests"] == 10 and stats["model_calls"] == 3 and stats["largest_batch"] == 4
    assert stats["mean_batch_size"] == pytest.approx(10 / 3)


def test_a_lone_item_does_not_wait_for_company_but_an_arriving_one_is_waited_for():
    import time

    calls = []

    async def main():
        batcher = MicroBatcher(_squares(calls), max_batch_size=8, max_wait_ms=2000)
        started = time.perf_counter()
        alone = await batcher.submit(3)  # nothing else is on its way: run at once, not after 2 s
        lone_seconds = time.perf_counter() - started

        async def late_request():
            with batcher.arriving():  # e.g. its image is being decoded
                await asyncio.sleep(0.2)
                queued = batcher.enqueue(5)
            return await queued

        late = asyncio.create_task(late_request())
        await asyncio.sleep(0)  # the late request announces itself
        first = await batcher.submit(4)
        await batcher.stop()
        return alone, lone_seconds, first, await late

    alone, lone_seconds, first, late = asyncio.run(main())
    assert (alone, first, late) == (9, 16, 25)
    assert lone_seconds < 1.0
    assert calls == [[3], [4, 5]]  # the first of the two waited for the one still arriving


def test_batcher_size_one_is_one_call_per_item():
    calls = []

    async def main():
        batcher = MicroBatcher(_squares(calls), max_batch_size=1, max_wait_ms=1000)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert calls == [[0], [1], [2], [3], [4]]


def test_batcher_failures_stay_per_item():
    calls = []

    async def main():
        batcher = MicroBatcher(_squares(calls), max_batch_size=8, max_wait_ms=1000)
        results = await asyncio.gather(*(batcher.submit(i) for i in (1, -2, 3)), return_exceptions=True)
        stats = batcher.stats.to_dict()
        await batcher.stop()
        return results, stats

    results, stats = asyncio.run(main())
    assert results[0] == 1 and results[2] == 9
    assert isinstance(results[1], ValueError) and "negative item in [-2]" in str(results[1])
    assert calls == [[1, -2, 3], [1], [-2], [3]]  # the batch failed, then each item ran alone
    assert stats["failed_batches"] == 1 and stats["requests"] == 3 and stats["model_calls"] == 4


def test_batcher_checks_its_arguments_and_result_length():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda items: items, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(lambda items: items, max_wait_ms=-1)

    async def main():
        batcher = MicroBatcher(lambda items: [], max_batch_size=2, max_wait_ms=0)
        try:
            return await batcher.submit(1)
        finally:
            await batcher.stop()

    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        asyncio.run(main())


# ----------------------------------------------------------------------------------------- the real app
REQUESTS = [({"text": "red shirt", "top_k": "3"}, "red"), ({"text": "blue shirt", "top_k": "1"}, None),
            ({"text": "", "top_k": "2"}, "green"), ({"text": "green shirt"}, "blue"),
            ({"text": "a red cotton shirt", "top_k": "2"}, None), ({"text": "blue"}, "blue"),
            ({"text": "green shirt 7", "top_k": "3"}, "green"), ({"text": "shirt"}, None)]


def _post_kwargs(data, colour):
    files = {"image": ("x.png", _png(colour), "image/png")} if colour else None
    return {"data": data, "files": files}


def _assert_same(batched: dict, sequential: dict):
    assert [item["label"] for item in batched["labels"]] == [item["label"] for item in sequential["labels"]]
    for got, want in zip(batched["labels"], sequential["labels"]):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
    assert batched["missing"] == sequential["missing"]
    assert batched["gate"] == pytest.approx(sequential["gate"], abs=1e-5)


def test_concurrent_predictions_are_batched_and_match_sequential(trained_run_dir):
    with TestClient(create_app(trained_run_dir, micro_batch=1)) as client:
        sequential = []
        for data, colour in REQUESTS:
            response = client.post("/predict", **_post_kwargs(data, colour))
            assert response.status_code == 200, response.text
            sequential.append(response.json())
        stats = client.get("/info").json()["micro_batching"]
        assert stats["max_batch_size"] == 1
        assert stats["model_calls"] == stats["requests"] == len(REQUESTS)

    app = create_app(trained_run_dir, micro_batch=16, max_wait_ms=500)

    async def concurrently():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fluid.test") as client:
            responses = await asyncio.gather(*(client.post("/predict", **_post_kwargs(data, colour))
                                               for data, colour in REQUESTS))
            info = (await client.get("/info")).json()
        await app.state.batcher.stop()
        return responses, info

    responses, info = asyncio.run(concurrently())
    for response, (data, _), want in zip(responses, REQUESTS, sequential):
        assert response.status_code == 200, response.text
        result = response.json()
        assert len(result["labels"]) == int(data.get("top_k", 3))  # each request keeps its own top_k
        _assert_same(result, want)
    stats = info["micro_batching"]
    assert stats["requests"] == len(REQUESTS)
    assert stats["model_calls"] < len(REQUESTS) and stats["largest_batch"] > 1, stats


def test_bad_requests_never_reach_the_batcher(trained_run_dir):
    with TestClient(create_app(trained_run_dir, micro_batch=4, max_wait_ms=1)) as client:
        assert client.post("/predict", data={"text": " "}).status_code == 400
        corrupt = client.post("/predict", files={"image": ("x.png", b"not an image", "image/png")})
        assert corrupt.status_code == 400
        assert client.post("/predict", data={"text": "red shirt"}).status_code == 200
        stats = client.get("/info").json()["micro_batching"]
        assert stats["requests"] == 1 and stats["model_calls"] == 1


def test_create_app_checks_batching_arguments(trained_run_dir):
    with pytest.raises(ValueError, match="micro_batch"):
        create_app(trained_run_dir, micro_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        create_app(trained_run_dir, max_wait_ms=-1)
