"""Golden checks: each served version replays its golden answer through its own lane.

The lane is real (batcher, classifier, the gateway's decode and resize) around a
FakeBackend, whose answer the test chooses; the golden files are written as an
export writes them (fake_backend.write_golden_answer).
"""

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from api_client import in_process
from fake_backend import (
    MODEL_NAME,
    FakeBackend,
    fake_settings,
    ramp_scores,
    write_golden_answer,
    write_model_files,
)
from gateway.decode_budget import MIB, DecodeBudget
from gateway.golden_check import GoldenChecker, GoldenResult
from gateway.lanes import Lane, open_lane
from gateway.target import Target

pytestmark = pytest.mark.anyio

PHOTO = (Path(__file__).parents[1] / "cat.jpg").read_bytes()
WRONG = ramp_scores()[::-1].copy()  # the same values, the classes reversed


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


async def started_lane(
    root: Path, backend: FakeBackend, executor: ThreadPoolExecutor, **settings: float
) -> Lane:
    lane = open_lane(
        fake_settings(root, **settings),
        Target(MODEL_NAME, version=backend.version),
        backend,
        executor,
        DecodeBudget(64 * MIB),
    )
    await lane.start()
    return lane


def gauge(version: int) -> float | None:
    return REGISTRY.get_sample_value(
        "gateway_golden_check_passed", {"model": MODEL_NAME, "version": str(version)}
    )


async def test_a_version_that_answers_as_exported_passes(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    write_golden_answer(write_model_files(tmp_path, 11), 11, PHOTO)
    backend = FakeBackend(version=11)
    lane = await started_lane(tmp_path, backend, executor)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert (result.model, result.version, result.passed) == (MODEL_NAME, 11, True)
    assert result.detail.startswith("the golden photograph's answer matches the golden answer (L1 ")
    assert result.l1 is not None
    assert result.l1 < 1e-5
    assert len(backend.batches) == 1
    assert backend.batches[0].shape == (1, 224, 224, 3)  # the photograph, decoded and resized
    assert gauge(11) == 1


async def test_a_version_that_answers_differently_fails_saying_how(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    write_golden_answer(write_model_files(tmp_path, 12), 12, PHOTO)
    lane = await started_lane(tmp_path, FakeBackend(version=12, scores=WRONG), executor)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert result.passed is False
    assert result.detail.startswith("probabilities differ from the golden answer by L1 ")
    assert "(tolerance 0.01)" in result.detail
    assert gauge(12) == 0


async def test_a_version_without_a_golden_answer_does_not_fail(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    backend = FakeBackend(version=13)
    lane = await started_lane(tmp_path, backend, executor)
    write_model_files(tmp_path, 13)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert (result.passed, result.detail) == (None, "the version has no golden answer")
    assert backend.batches == []  # nothing to replay
    assert gauge(13) is None


async def test_an_unusable_golden_answer_fails(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    folder = write_golden_answer(write_model_files(tmp_path, 14), 14, PHOTO)
    (folder / "golden_answer.json").write_text('{"format": 1, "photo": ')
    lane = await started_lane(tmp_path, FakeBackend(version=14), executor)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert result.passed is False
    assert result.detail.startswith(
        "its golden answer is unusable: assets.extra/golden_answer.json: not valid JSON"
    )


async def test_a_corrupt_golden_photograph_fails(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    folder = write_golden_answer(write_model_files(tmp_path, 15), 15, PHOTO)
    (folder / "golden_photo.jpg").write_bytes(PHOTO[:-10])
    lane = await started_lane(tmp_path, FakeBackend(version=15), executor)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert result.passed is False
    assert result.detail.startswith("its golden answer is unusable: assets.extra/golden_photo.jpg")
    assert "a corrupt copy" in result.detail


async def test_a_missing_photograph_of_any_name_fails(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    """golden_answer.json may name its photograph freely: its absence is a golden file problem."""
    folder = write_golden_answer(
        write_model_files(tmp_path, 16), 16, PHOTO, photo_file="reference.jpg"
    )
    (folder / "reference.jpg").unlink()
    lane = await started_lane(tmp_path, FakeBackend(version=16), executor)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert result.passed is False, f"not failed: {result.detail}"
    assert "reference.jpg" in result.detail


async def test_a_golden_answer_for_other_pixels_fails(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    write_golden_answer(write_model_files(tmp_path, 17), 17, PHOTO)
    backend = FakeBackend(version=17, image_size=(192, 192))
    lane = await started_lane(tmp_path, backend, executor)
    result = await GoldenChecker(lane.settings).check(lane)
    await lane.close()
    assert result is not None
    assert result.passed is False
    assert result.detail == (
        "the model takes (192, 192) pixels, its golden answer was computed at (224, 224): "
        "not this version's answer"
    )
    assert backend.batches == []


async def test_a_lane_serving_nothing_yet_is_not_checked(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    backend = FakeBackend(version=18, ready=False)
    lane = await started_lane(tmp_path, backend, executor)
    assert await GoldenChecker(lane.settings).check(lane) is None
    await lane.close()


async def test_results_are_cached_for_golden_check_seconds(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    write_golden_answer(write_model_files(tmp_path, 21), 21, PHOTO)
    backend = FakeBackend(version=21)
    lane = await started_lane(tmp_path, backend, executor, golden_check_seconds=3600)
    checker = GoldenChecker(lane.settings)
    first = await checker.check(lane)
    for _ in range(5):
        assert await checker.check(lane) is first
    await lane.close()
    assert len(backend.batches) == 1


async def test_a_version_is_checked_by_one_task_however_many_ask(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    write_golden_answer(write_model_files(tmp_path, 22), 22, PHOTO)
    backend = FakeBackend(version=22)
    backend.predict_gate = asyncio.Event()
    lane = await started_lane(tmp_path, backend, executor)
    checker = GoldenChecker(lane.settings)
    probes = [asyncio.create_task(checker.check(lane)) for _ in range(10)]
    await backend.predicting.wait()
    assert not any(probe.done() for probe in probes)  # the first check is waited for
    backend.predict_gate.set()
    results = await asyncio.gather(*probes)
    await lane.close()
    assert len(backend.batches) == 1
    assert all(result is results[0] for result in results)


async def test_a_stale_result_is_answered_while_a_fresh_check_runs(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    write_golden_answer(write_model_files(tmp_path, 23), 23, PHOTO)
    backend = FakeBackend(version=23)
    lane = await started_lane(tmp_path, backend, executor, golden_check_seconds=1e-9)
    checker = GoldenChecker(lane.settings)
    passed = await checker.check(lane)
    assert passed is not None
    assert passed.passed is True
    # The version now answers wrongly, and slowly: the probe must not wait for it.
    backend.scores, backend.predict_gate = WRONG, asyncio.Event()
    backend.predicting.clear()
    assert await checker.check(lane) is passed
    await backend.predicting.wait()  # the fresh check runs, in the background
    assert await checker.check(lane) is passed  # still running: still the stale one
    assert len(backend.batches) == 2  # and no second fresh check started beside it
    backend.predict_gate.set()
    fresh = await eventually_not(checker, lane, passed)
    await checker.close()
    await lane.close()
    assert fresh.passed is False


async def eventually_not(checker: GoldenChecker, lane: Lane, old: GoldenResult) -> GoldenResult:
    """The first result other than `old` (the fresh check ends in the background)."""
    deadline = asyncio.get_running_loop().time() + 10.0
    while (result := await checker.check(lane)) is old:
        assert asyncio.get_running_loop().time() < deadline, "the fresh check never ended"
        await asyncio.sleep(0.01)
    assert result is not None
    return result


async def test_close_cancels_a_running_check(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    write_golden_answer(write_model_files(tmp_path, 24), 24, PHOTO)
    backend = FakeBackend(version=24)
    backend.predict_gate = asyncio.Event()
    lane = await started_lane(tmp_path, backend, executor)
    checker = GoldenChecker(lane.settings)
    probe = asyncio.create_task(checker.check(lane))
    await backend.predicting.wait()
    await checker.close()
    backend.predict_gate.set()
    with pytest.raises(asyncio.CancelledError):
        await probe
    await lane.close()


async def test_health_is_503_naming_the_version_that_fails(tmp_path: Path) -> None:
    root = write_model_files(tmp_path, 1)
    write_model_files(root, 2)
    write_golden_answer(root, 1, PHOTO, WRONG)
    write_golden_answer(root, 2, PHOTO)
    config = root / "models.config"
    config.write_text(
        'model_config_list { config { name: "mobilenet" base_path: "/models/mobilenet" '
        "model_version_policy { all {} } } }"
    )
    settings = fake_settings(root, model_config_file=config)
    async with in_process(settings, FakeBackend(version=2)) as client:
        # Versions' lanes open ahead of requests; a request to each makes sure they are.
        for version in (1, 2):
            files = {"file": ("cat.jpg", PHOTO)}
            response = await client.post("/predict", params={"version": version}, files=files)
            assert response.status_code == 200
        response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["error"].startswith(
        "mobilenet version 1 fails its golden check: probabilities differ from the golden answer"
    )
    checks = {check["version"]: check for check in body["golden_checks"]}
    assert (checks[1]["passed"], checks[2]["passed"]) == (False, True)
    assert json.dumps(body).count(str(tmp_path)) == 0


async def test_health_is_ready_when_every_version_passes_or_has_no_golden_answer(
    tmp_path: Path,
) -> None:
    root = write_model_files(tmp_path, 1)
    write_golden_answer(root, 1, PHOTO, np.asarray(ramp_scores()))
    async with in_process(fake_settings(root), FakeBackend(version=1)) as client:
        response = await client.get("/health")
    assert response.status_code == 200, response.text
    [check] = response.json()["golden_checks"]
    assert (check["model"], check["version"], check["passed"]) == (MODEL_NAME, 1, True)


async def test_a_check_that_crashes_is_a_result_not_an_exception(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    """Whatever the model server does, /health reports it: a readiness probe never gets a 500."""
    write_golden_answer(write_model_files(tmp_path, 25), 25, PHOTO)
    backend = FakeBackend(version=25, error=RuntimeError("the runtime fell over"))
    lane = await started_lane(tmp_path, backend, executor)
    checker = GoldenChecker(lane.settings)
    try:
        result = await checker.check(lane)
    finally:
        await checker.close()
        await lane.close()
    assert result is not None
    assert result.passed is not True
    assert "the runtime fell over" not in result.detail  # an internal message stays in the log
