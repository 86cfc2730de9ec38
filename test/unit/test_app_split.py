"""Requests that name no version follow the routing file's split, and survive a bad one."""

import json
from pathlib import Path

import httpx
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files

pytestmark = pytest.mark.anyio


def png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def routing(tmp_path: Path, split: list[dict[str, object]]) -> Path:
    path = tmp_path / "routing.json"
    path.write_text(json.dumps({"models": {"mobilenet": {"split": split}}}))
    return path


async def answer(client: httpx.AsyncClient) -> dict[str, object]:
    response = await post_image_in_process(client, png(), "red.png")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_the_split_picks_the_version_and_says_so(tmp_path: Path) -> None:
    root = write_model_files(tmp_path / "models", version=1)
    write_model_files(root, version=2)
    # Without a config file the policy serves the newest folder only; serve both.
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "mobilenet" '
        f'base_path: "{root / "mobilenet"}" model_version_policy {{ all {{}} }} }} }}'
    )
    split = [{"version": 1, "weight": 0}, {"version": 2, "weight": 1}]
    settings = fake_settings(root, routing_file=routing(tmp_path, split), model_config_file=config)
    async with in_process(settings, FakeBackend(version=2)) as client:
        body = await answer(client)
    assert body["model"]["version"] == "2"  # type: ignore[index]
    assert body["routing"] == {"chosen_by": "split", "target": "mobilenet version 2"}


async def test_a_split_naming_what_is_not_served_falls_back_to_the_default(
    tmp_path: Path,
) -> None:
    root = write_model_files(tmp_path / "models", version=1)
    settings = fake_settings(root, routing_file=routing(tmp_path, [{"label": "gone", "weight": 1}]))
    async with in_process(settings, FakeBackend(version=1)) as client:
        body = await answer(client)
        metrics = (await client.get("/metrics/prometheus")).text
    assert body["routing"]["chosen_by"] == "split-fallback"  # type: ignore[index]
    assert "gone" in body["routing"]["detail"]  # type: ignore[index]
    assert body["model"]["version"] == "1"  # type: ignore[index]
    assert 'gateway_split_fallbacks_total{model="mobilenet"}' in metrics
