"""A full rollout, version 1 to version 2 by labels, while clients post without pause.

The steps are docs/rollouts.md section 6, against the TF Serving double reading
its model config file every second: publish version 2 atomically, add it to
the version policy, wait until it is AVAILABLE, move `canary` onto it, then
`stable`, then drop version 1 from the policy and delete its folder. TF
Serving moves a label only onto an AVAILABLE version
(TFS/model_servers/server_core.cc, UpdateModelVersionLabelMap), hence the wait
before the first move. Throughout, three clients send requests routed by a
90/10 split on the labels, and some naming ?label=stable or ?label=canary:
not one of them may fail.
"""

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from processes import Process
from routing_helpers import (
    MOBILENET,
    Answer,
    LoadClients,
    ServedModel,
    publish_version,
    serves_only,
    start_served,
    version_states,
    wait_for_states,
    write_config,
)

CLIENTS = 3
# Per client, in turn: mostly the split, and each label by name now and then.
MIX = ("split", "split", "stable", "split", "canary")
SPLIT = {"split": [{"label": "stable", "weight": 90}, {"label": "canary", "weight": 10}]}


@pytest.fixture
def rollout(model_root: Path, logs: Path, tmp_path: Path) -> Iterator[tuple[Path, Path, Process]]:
    """Version 1 served with stable=canary=1 (the compose start), a 90/10 split routing file."""
    model_dir = tmp_path / "models" / MOBILENET
    shutil.copytree(model_root / MOBILENET / "1", model_dir / "1")
    config = tmp_path / "models.config"
    write_config(config, ServedModel(MOBILENET, model_dir, (1,), {"stable": 1, "canary": 1}))
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps({"models": {MOBILENET: SPLIT}}), encoding="utf-8")
    double, front = start_served(model_dir, config, logs, "rollout", ROUTING_FILE=str(routing))
    yield model_dir, config, front
    front.stop()
    double.stop()


def policy(model_dir: Path, versions: tuple[int, ...], stable: int, canary: int) -> ServedModel:
    return ServedModel(MOBILENET, model_dir, versions, {"stable": stable, "canary": canary})


def test_a_version_rolls_out_by_labels_under_load_without_a_failed_request(
    rollout: tuple[Path, Path, Process], cat_jpeg: bytes
) -> None:
    model_dir, config, front = rollout
    moments: dict[str, float] = {}
    with (
        httpx.Client(base_url=front.url, timeout=30) as admin,
        LoadClients(front.url, cat_jpeg, CLIENTS, MIX) as load,
    ):
        load.answered_after(0.0, 20)

        publish_version(model_dir / "1", model_dir, 2)
        write_config(config, policy(model_dir, (1, 2), stable=1, canary=1))
        wait_for_states(admin, {(MOBILENET, 1): "AVAILABLE", (MOBILENET, 2): "AVAILABLE"})

        moments["canary"] = time.monotonic()
        write_config(config, policy(model_dir, (1, 2), stable=1, canary=2))
        load.wait_for(lambda seen: any(a.asked == "canary" and a.version == 2 for a in seen))
        load.answered_after(time.monotonic(), 20)

        moments["stable"] = time.monotonic()
        write_config(config, policy(model_dir, (1, 2), stable=2, canary=2))
        load.wait_for(lambda seen: any(a.asked == "stable" and a.version == 2 for a in seen))
        load.answered_after(time.monotonic(), 20)

        write_config(config, policy(model_dir, (2,), stable=2, canary=2))
        # Generous: the gateway's lanes keep their clients for a grace period, so
        # version 1's unload must not hurt anyone while they do.
        deadline = time.monotonic() + 60
        while not serves_only(admin, MOBILENET, 2):
            assert time.monotonic() < deadline, version_states(admin)
            load.answered_after(time.monotonic(), 1)
        shutil.rmtree(model_dir / "1")
        moments["end"] = time.monotonic()
        load.answered_after(moments["end"], 30)
    answers = load.answers

    failed = [a for a in answers if a.status != 200]
    print(f"\n{len(answers)} requests, {len(failed)} failed; moments {moments}")
    assert failed == []
    by_start = sorted(answers, key=lambda a: a.started)
    assert by_start[0].version == 1
    assert {a.version for a in answers} == {1, 2}
    assert {a.version for a in answers if a.started > moments["end"]} == {2}
    assert_label_moved_only_after(answers, "canary", moments["canary"])
    assert_label_moved_only_after(answers, "stable", moments["stable"])
    # The split answered through both labels, and says so.
    split = [a for a in answers if a.asked == "split"]
    assert {a.chosen_by for a in split} == {"split"}
    assert {a.label for a in split} == {"stable", "canary"}


def assert_label_moved_only_after(answers: list[Answer], label: str, moved: float) -> None:
    """Requests naming `label` got version 1 until the move was written, then 2, never back."""
    named = sorted((a for a in answers if a.asked == label), key=lambda a: a.started)
    assert named, f"no request named ?label={label}"
    # Finished before the config file changed: TF Serving cannot have moved the label yet.
    assert {a.version for a in named if a.finished < moved} == {1}
    assert named[-1].version == 2
    # One switch: after the first answer from version 2, no request started later got 1.
    first_2 = next(a for a in named if a.version == 2)
    late_1 = [a for a in named if a.version == 1 and a.started > first_2.finished]
    assert late_1 == [], late_1[:3]
    assert first_2.finished > moved
