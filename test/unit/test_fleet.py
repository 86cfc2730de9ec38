"""The fleet in-process: what exists, lanes opened once, the lane cap, lanes retired and closed.

Lanes' backends are FakeBackends (FakeBackend.open_lane); the versions served are
real version folders under a temporary MODEL_BASE_PATH and a real config file,
which the fleet's watcher re-reads (polled every few milliseconds here).
"""

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fake_backend import MODEL_NAME, FakeBackend, fake_settings, write_model_files
from gateway.decode_budget import MIB, DecodeBudget
from gateway.errors import BackendUnavailable, UnknownModel, UnknownVersion
from gateway.fleet import MAX_LANES, Fleet
from gateway.model_config import ModelConfigFile
from gateway.target import Target

pytestmark = pytest.mark.anyio

FAST_POLL = 0.01  # the watcher's period here: changes are seen within a few of them
BOUND_SECONDS = 10.0


def config_text(models: dict[str, str]) -> str:
    """A model_config_list of `name: extra fields` (policy, labels), base paths by name."""
    entries = "\n".join(
        f'config {{ name: "{name}" base_path: "/models/{name}" {extra} }}'
        for name, extra in models.items()
    )
    return f"model_config_list {{\n{entries}\n}}\n"


def write_config(path: Path, models: dict[str, str]) -> Path:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(config_text(models))
    os.replace(temporary, path)  # a new inode: seen as a change whatever the clock's tick
    return path


def versions_on_disk(root: Path, *versions: int, model: str = MODEL_NAME) -> Path:
    for version in versions:
        if model == MODEL_NAME:
            write_model_files(root, version)
        else:
            (root / model / str(version)).mkdir(parents=True, exist_ok=True)
    return root


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait for the fleet's watcher to have acted; BOUND_SECONDS is a bound, not a speed."""
    deadline = asyncio.get_running_loop().time() + BOUND_SECONDS
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within the bound"
        await asyncio.sleep(FAST_POLL)  # the watcher exposes no event to wait on


async def version_states(fleet: Fleet, model: str) -> list[tuple[int, str]]:
    """(version, state) of each version /models would list for `model`, highest first."""
    states = await fleet.served.states(fleet.entry(model))
    return [(state.version, state.state) for state in states]


@contextlib.asynccontextmanager
async def running_fleet(
    root: Path,
    backend: FakeBackend,
    models: dict[str, str] | None = None,
    *,
    start: bool = True,
    **overrides: Any,
) -> AsyncIterator[Fleet]:
    """A fleet over `root` (with a config file of `models` when given), started, then closed."""
    config = None
    if models is not None:
        path = write_config(root / "models.config", models)
        overrides["model_config_file"] = path
        config = ModelConfigFile(path, root)
    overrides.setdefault("status_poll_seconds", FAST_POLL)
    overrides.setdefault("model_config_poll_seconds", FAST_POLL)
    settings = fake_settings(root, **overrides)
    with ThreadPoolExecutor(max_workers=1) as executor:
        budget = DecodeBudget(64 * MIB)
        fleet = Fleet(settings, executor, budget, config, backend.open_lane, backend)
        if start:
            await fleet.start()
        try:
            yield fleet
        finally:
            await fleet.close()


def lanes_for(backend: FakeBackend, target: Target) -> list[FakeBackend]:
    return [lane for opened, lane in backend.lane_backends if opened == target]


async def test_an_unknown_model_is_404_naming_the_models_served(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1)
    versions_on_disk(root, 1, model="resnet")
    async with running_fleet(root, FakeBackend(), {MODEL_NAME: "", "resnet": ""}) as fleet:
        with pytest.raises(UnknownModel) as unknown:
            await fleet.lane_for(Target("inception"))
    assert unknown.value.detail == (
        "Model 'inception' is not served here; served models: mobilenet, resnet."
    )


async def test_an_unknown_version_is_404_naming_the_versions_served(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1, 2, 3)
    policy = "model_version_policy { specific { versions: 1 versions: 3 } }"
    async with running_fleet(root, FakeBackend(), {MODEL_NAME: policy}) as fleet:
        # 2 is on disk but not served by the policy: as unknown as 9.
        for version in (2, 9):
            with pytest.raises(UnknownVersion) as unknown:
                await fleet.lane_for(Target(MODEL_NAME, version=version))
            assert unknown.value.detail == (
                f"Model 'mobilenet' has no version {version} served; served versions: 1, 3."
            )


async def test_an_unknown_label_is_404_naming_the_labels(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1, 2)
    labels = (
        "model_version_policy { all {} } "
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'
    )
    async with running_fleet(root, FakeBackend(), {MODEL_NAME: labels}) as fleet:
        with pytest.raises(UnknownVersion) as unknown:
            await fleet.lane_for(Target(MODEL_NAME, label="beta"))
    assert unknown.value.detail == (
        "Model 'mobilenet' has no version label 'beta'; its labels: canary, stable."
    )


async def test_a_label_is_answered_by_the_lane_of_the_version_it_names(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1, 2)
    labels = (
        "model_version_policy { all {} } "
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'
    )
    async with running_fleet(root, FakeBackend(), {MODEL_NAME: labels}) as fleet:
        canary = await fleet.lane_for(Target(MODEL_NAME, label="canary"))
        stable = await fleet.lane_for(Target(MODEL_NAME, label="stable"))
        assert canary.target == Target(MODEL_NAME, version=2)
        assert canary.backend.served_version() == 2
        assert stable.backend.served_version() == 1
        assert canary is await fleet.lane_for(Target(MODEL_NAME, version=2))


async def test_a_lane_is_opened_once_however_many_requests_race_for_it(tmp_path: Path) -> None:
    backend = FakeBackend(version=2)
    backend.lane_start_gate = asyncio.Event()  # every lane stays "opening" until set
    root = versions_on_disk(tmp_path, 1, 2)
    target = Target(MODEL_NAME, version=1)
    # The config file has the fleet open version 1 ahead too: one more contender.
    policy_all = "model_version_policy { all {} }"
    async with running_fleet(root, backend, {MODEL_NAME: policy_all}) as fleet:
        waiting = [asyncio.create_task(fleet.lane_for(target)) for _ in range(20)]
        await asyncio.sleep(0)  # let every request reach the opening lane
        assert not any(task.done() for task in waiting)
        backend.lane_start_gate.set()
        lanes = await asyncio.gather(*waiting)
    assert len(lanes_for(backend, target)) == 1
    assert all(lane is lanes[0] for lane in lanes)
    assert lanes[0].backend is lanes_for(backend, target)[0]


async def test_lanes_past_the_cap_are_refused_with_503(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, *range(1, MAX_LANES + 3))
    backend = FakeBackend(version=MAX_LANES + 2)
    # Not started: no watcher opens lanes ahead, so each lane here is opened by a request.
    async with running_fleet(
        root, backend, {MODEL_NAME: "model_version_policy { all {} }"}, start=False
    ) as fleet:
        for version in range(1, MAX_LANES):  # with the default lane: MAX_LANES open
            await fleet.lane_for(Target(MODEL_NAME, version=version))
        with pytest.raises(BackendUnavailable) as refused:
            await fleet.lane_for(Target(MODEL_NAME, version=MAX_LANES))
        assert refused.value.detail == f"{MAX_LANES} model versions are open; try again later"
        assert len(fleet.lanes()) == MAX_LANES
        # A lane already open is still handed out.
        assert (await fleet.lane_for(Target(MODEL_NAME, version=1))).target.version == 1


async def test_lanes_opened_ahead_respect_the_cap_too(tmp_path: Path) -> None:
    """With a config file, every served version's lane is opened ahead: not past MAX_LANES."""
    root = versions_on_disk(tmp_path, *range(1, MAX_LANES + 6))
    backend = FakeBackend(version=MAX_LANES + 5)
    backend.lane_start_gate = asyncio.Event()  # lanes being opened stay so
    async with running_fleet(root, backend, {MODEL_NAME: "model_version_policy { all {} }"}):
        # start() has created every opening task; one turn of the loop runs each one up to
        # its backend's start(), after the backend was made.
        await asyncio.sleep(0)
        made = len(backend.lane_backends)
        backend.lane_start_gate.set()
    assert made + 1 <= MAX_LANES  # + the default lane


async def test_a_version_no_longer_served_is_retired_then_closed_after_the_grace(
    tmp_path: Path,
) -> None:
    root = versions_on_disk(tmp_path, 1, 2)
    backend = FakeBackend(version=2)
    latest_two = "model_version_policy { latest { num_versions: 2 } }"
    async with running_fleet(
        root, backend, {MODEL_NAME: latest_two}, request_timeout_seconds=0.2
    ) as fleet:
        target = Target(MODEL_NAME, version=1)
        lane = await fleet.lane_for(target)
        retired = lane.backend
        assert isinstance(retired, FakeBackend)
        versions_on_disk(root, 3)  # now 3 and 2 are the latest two: 1 goes
        await eventually(lambda: lane not in fleet.lanes(), "version 1's lane retired")
        with pytest.raises(UnknownVersion):
            await fleet.lane_for(target)
        await eventually(lambda: retired.closed, "the retired lane closed")
        assert (await fleet.lane_for(Target(MODEL_NAME, version=3))).target.version == 3


async def test_a_version_the_default_lane_still_answers_with_stays_served(
    tmp_path: Path,
) -> None:
    """Version 2 on disk but not loaded yet (or failing to load): as TF Serving keeps the
    older version, 1 can still be asked for, and its lane goes once the default moves on."""
    root = versions_on_disk(tmp_path, 1, 2)
    backend = FakeBackend(version=1)  # the default lane: still on 1
    async with running_fleet(root, backend, request_timeout_seconds=0.2) as fleet:
        lane = await fleet.lane_for(Target(MODEL_NAME, version=1))
        assert lane.backend.served_version() == 1
        assert await version_states(fleet, MODEL_NAME) == [(2, "START"), (1, "AVAILABLE")]
        await asyncio.sleep(FAST_POLL * 20)  # many watcher passes
        assert lane in fleet.lanes()
        backend.version = 2  # version 2 loaded
        await eventually(lambda: lane not in fleet.lanes(), "version 1's lane retired")
        with pytest.raises(UnknownVersion):
            await fleet.lane_for(Target(MODEL_NAME, version=1))


async def test_another_models_version_stays_served_until_the_newer_one_is_available(
    tmp_path: Path,
) -> None:
    """With a config file, a model's version lane keeps answering (and is not retired)
    while the version its policy now wants is still opening, as TF Serving keeps it."""
    root = versions_on_disk(tmp_path, 1)
    versions_on_disk(root, 1, model="resnet")
    backend = FakeBackend()
    async with running_fleet(
        root, backend, {MODEL_NAME: "", "resnet": ""}, request_timeout_seconds=0.2
    ) as fleet:
        old = await fleet.lane_for(Target("resnet", version=1))
        backend.lane_start_gate = asyncio.Event()  # lanes opened from now on hang in start()
        versions_on_disk(root, 2, model="resnet")
        await eventually(lambda: len(lanes_for(backend, Target("resnet", 2))) == 1, "2 opening")
        await asyncio.sleep(FAST_POLL * 20)  # many watcher passes
        assert old in fleet.lanes()
        assert await fleet.lane_for(Target("resnet", version=1)) is old
        assert await fleet.lane_for(Target("resnet")) is old
        assert await version_states(fleet, "resnet") == [(2, "START"), (1, "AVAILABLE")]
        backend.lane_start_gate.set()  # version 2 becomes available
        await eventually(lambda: old not in fleet.lanes(), "version 1's lane retired")


async def test_a_pinned_lane_of_the_new_version_does_not_end_the_old_ones_service(
    tmp_path: Path,
) -> None:
    """A request naming version 2 opened (and loaded) it while the default lane still
    answers with 1: 1 is served until the default moves on, not until any lane has 2."""
    root = versions_on_disk(tmp_path, 1, 2)
    backend = FakeBackend(version=1)
    async with running_fleet(root, backend, request_timeout_seconds=0.2) as fleet:
        await fleet.lane_for(Target(MODEL_NAME, version=2))
        old = await fleet.lane_for(Target(MODEL_NAME, version=1))
        assert await version_states(fleet, MODEL_NAME) == [(2, "AVAILABLE"), (1, "AVAILABLE")]
        await asyncio.sleep(FAST_POLL * 20)  # many watcher passes
        assert old in fleet.lanes()
        backend.version = 2
        await eventually(lambda: old not in fleet.lanes(), "version 1's lane retired")


async def test_a_version_no_longer_on_disk_is_not_kept_served(tmp_path: Path) -> None:
    """A version kept only in memory cannot be opened for a request naming it: 404."""
    root = versions_on_disk(tmp_path, 1, 2)
    async with running_fleet(root, FakeBackend(version=1)) as fleet:
        shutil.rmtree(root / MODEL_NAME / "1")
        with pytest.raises(UnknownVersion) as unknown:
            await fleet.lane_for(Target(MODEL_NAME, version=1))
        assert unknown.value.detail.endswith("served versions: 2.")


async def test_a_retired_lane_is_held_open_for_its_requests(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1, 2)
    backend = FakeBackend(version=2)
    async with running_fleet(
        root, backend, {MODEL_NAME: "model_version_policy { all {} }"}
    ) as fleet:  # the grace is REQUEST_TIMEOUT_SECONDS: 30 s by default
        lane = await fleet.lane_for(Target(MODEL_NAME, version=1))
        shutil.rmtree(root / MODEL_NAME / "1")
        await eventually(lambda: lane not in fleet.lanes(), "version 1's lane retired")
        assert isinstance(lane.backend, FakeBackend)
        assert not lane.backend.closed


async def test_a_retiring_lane_is_closed_when_the_fleet_closes(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1, 2)
    backend = FakeBackend(version=2)
    async with running_fleet(
        root, backend, {MODEL_NAME: "model_version_policy { all {} }"}
    ) as fleet:
        lane = await fleet.lane_for(Target(MODEL_NAME, version=1))
        shutil.rmtree(root / MODEL_NAME / "1")
        await eventually(lambda: lane not in fleet.lanes(), "version 1's lane retired")
    assert isinstance(lane.backend, FakeBackend)
    assert lane.backend.closed, "a lane retired during its grace was never closed"


async def test_every_lane_is_closed_with_the_fleet(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1, 2)
    backend = FakeBackend(version=2)
    async with running_fleet(root, backend, {MODEL_NAME: "model_version_policy { all {} }"}):
        await eventually(lambda: len(backend.lane_backends) == 2, "versions 1 and 2 opened")
    assert backend.closed
    assert all(lane.closed for _, lane in backend.lane_backends)


async def test_a_reload_that_drops_model_name_is_refused(tmp_path: Path) -> None:
    """As at start-up: MODEL_NAME must stay one of the models served, or defaults break."""
    root = versions_on_disk(tmp_path, 1)
    versions_on_disk(root, 1, model="resnet")
    async with running_fleet(root, FakeBackend(), {MODEL_NAME: "", "resnet": ""}) as fleet:
        write_config(root / "models.config", {"resnet": ""})
        await eventually(
            lambda: fleet.config_error != "" or fleet.models.names() == ["resnet"], "reload seen"
        )
        assert fleet.models.names() == [MODEL_NAME, "resnet"]
        assert "MODEL_NAME" in fleet.config_error


async def test_a_new_model_in_the_config_file_is_served_without_a_restart(tmp_path: Path) -> None:
    root = versions_on_disk(tmp_path, 1)
    versions_on_disk(root, 4, model="resnet")
    backend = FakeBackend()
    async with running_fleet(root, backend, {MODEL_NAME: ""}) as fleet:
        with pytest.raises(UnknownModel):
            await fleet.lane_for(Target("resnet"))
        write_config(root / "models.config", {MODEL_NAME: "", "resnet": ""})
        await eventually(lambda: "resnet" in fleet.models.names(), "resnet configured")
        lane = await fleet.lane_for(Target("resnet", version=4))
        assert lane.backend.served_version() == 4
