"""A lane's settings (TF Serving pins per target), its readiness wait, and its backend."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fake_backend import MODEL_NAME, FakeBackend, fake_settings
from gateway.decode_budget import MIB, DecodeBudget
from gateway.embedded import EmbeddedBackend
from gateway.errors import BackendUnavailable
from gateway.lanes import Lane, build_lane_backend, lane_settings, open_lane
from gateway.model_config import ModelEntry
from gateway.settings import Settings
from gateway.target import Target
from gateway.tfserving import TFServingBackend

pytestmark = pytest.mark.anyio

SERVER = "http://tfserving:8501"


def tfserving_settings(root: Path, url: str = f"{SERVER}/v1/models/mobilenet:predict") -> Settings:
    return fake_settings(root, inference_backend="tfserving", tf_serving_url=url)


def resnet(root: Path) -> ModelEntry:
    return ModelEntry("resnet", root / "resnet_v2")


def test_the_default_lane_keeps_tf_serving_url_as_given(tmp_path: Path) -> None:
    settings = tfserving_settings(tmp_path, f"{SERVER}/v1/models/mobilenet/labels/stable:predict")
    entry = ModelEntry(MODEL_NAME, tmp_path / MODEL_NAME)
    aimed = lane_settings(settings, entry, Target(MODEL_NAME))
    assert aimed.tf_serving_url == f"{SERVER}/v1/models/mobilenet/labels/stable:predict"
    assert aimed.model_dir == tmp_path / MODEL_NAME


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (Target("resnet"), "/v1/models/resnet:predict"),
        (Target("resnet", version=3), "/v1/models/resnet/versions/3:predict"),
        (Target("resnet", label="canary"), "/v1/models/resnet/labels/canary:predict"),
    ],
)
def test_other_lanes_are_pinned_to_their_target(tmp_path: Path, target: Target, path: str) -> None:
    aimed = lane_settings(tfserving_settings(tmp_path), resnet(tmp_path), target)
    assert aimed.tf_serving_url == SERVER + path
    assert (aimed.model_name, aimed.model_dir) == ("resnet", tmp_path / "resnet_v2")


def test_a_version_lane_of_the_default_model_is_pinned_whatever_the_url_pins(
    tmp_path: Path,
) -> None:
    settings = tfserving_settings(tmp_path, f"{SERVER}/v1/models/mobilenet/versions/1:predict")
    entry = ModelEntry(MODEL_NAME, tmp_path / MODEL_NAME)
    aimed = lane_settings(settings, entry, Target(MODEL_NAME, version=2))
    assert aimed.tf_serving_url == f"{SERVER}/v1/models/mobilenet/versions/2:predict"


def test_in_process_lanes_are_not_pinned_by_url(tmp_path: Path) -> None:
    aimed = lane_settings(fake_settings(tmp_path), resnet(tmp_path), Target("resnet", version=3))
    assert (
        aimed.tf_serving_url == f"{aimed.tf_serving_url.split('/v1/')[0]}/v1/models/resnet:predict"
    )
    assert aimed.inference_backend == "embedded"


def test_lane_backends_follow_the_inference_backend(tmp_path: Path) -> None:
    entry = resnet(tmp_path)
    target = Target("resnet", version=3)
    remote = build_lane_backend(
        lane_settings(tfserving_settings(tmp_path), entry, target), entry, target
    )
    local = build_lane_backend(lane_settings(fake_settings(tmp_path), entry, target), entry, target)
    assert isinstance(remote, TFServingBackend)
    assert isinstance(local, EmbeddedBackend)


def version_2_lane(tmp_path: Path, backend: FakeBackend, executor: ThreadPoolExecutor) -> Lane:
    """A lane for version 2 around `backend`, not started: wait_ready only asks its status."""
    target = Target(MODEL_NAME, version=2)
    return open_lane(fake_settings(tmp_path), target, backend, executor, DecodeBudget(8 * MIB))


async def test_a_ready_lane_is_ready_at_once(tmp_path: Path) -> None:
    backend = FakeBackend(version=2)
    with ThreadPoolExecutor(max_workers=1) as executor:
        lane = version_2_lane(tmp_path, backend, executor)
        await lane.start()
        await lane.wait_ready(time.monotonic() + 5)
        await lane.close()
    assert (backend.started, backend.closed) == (True, True)


async def test_a_lane_that_ended_with_a_reason_says_so(tmp_path: Path) -> None:
    backend = FakeBackend(version=2, ready=False, unready_state="END", detail="no SavedModel")
    with ThreadPoolExecutor(max_workers=1) as executor:
        lane = version_2_lane(tmp_path, backend, executor)
        with pytest.raises(BackendUnavailable) as unavailable:
            await lane.wait_ready(None)
    assert unavailable.value.detail == "mobilenet version 2 is not ready: no SavedModel"


async def test_a_lane_still_loading_at_the_deadline_is_503(tmp_path: Path) -> None:
    backend = FakeBackend(version=2, ready=False, unready_state="LOADING")
    with ThreadPoolExecutor(max_workers=1) as executor:
        lane = version_2_lane(tmp_path, backend, executor)
        with pytest.raises(BackendUnavailable) as unavailable:
            await lane.wait_ready(time.monotonic())
    assert unavailable.value.detail == "mobilenet version 2 is still loading"


async def test_a_lane_waits_until_its_version_is_loaded(tmp_path: Path) -> None:
    backend = FakeBackend(version=2, ready=False, unready_state="LOADING")
    with ThreadPoolExecutor(max_workers=1) as executor:
        lane = version_2_lane(tmp_path, backend, executor)
        waiting = asyncio.create_task(lane.wait_ready(None))
        await asyncio.sleep(0)
        assert not waiting.done()
        backend.ready = True
        await asyncio.wait_for(waiting, timeout=10)
