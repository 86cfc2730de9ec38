"""Pillow's and OpenCV's process-wide settings: applied as the gateway starts, never on import."""

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from PIL import Image, PngImagePlugin

from gateway.app import create_app
from gateway.library_settings import PNG_TEXT_MEMORY_BYTES, apply_library_settings
from gateway.settings import Settings

FOREIGN = (1234, 5678, 3)  # MAX_IMAGE_PIXELS, MAX_TEXT_MEMORY, OpenCV threads: none the gateway's


def current() -> tuple[int | None, int, int]:
    return Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_MEMORY, cv2.getNumThreads()


@pytest.fixture
def foreign_settings() -> Iterator[None]:
    """Values the gateway never sets, for the test; the gateway's again after it."""
    Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_MEMORY, threads = FOREIGN
    cv2.setNumThreads(threads)
    assert current() == FOREIGN
    try:
        yield
    finally:
        apply_library_settings()


@pytest.mark.parametrize("module", ["gateway.imaging", "gateway.resize", "gateway.app"])
@pytest.mark.usefixtures("foreign_settings")
def test_importing_a_module_changes_no_library_setting(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.loader is not None
    # A fresh copy of the module, run as an import runs it, beside the one in sys.modules.
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert current() == FOREIGN


@pytest.mark.usefixtures("foreign_settings")
def test_the_gateway_applies_them_as_it_starts(tmp_path: Path) -> None:
    app = create_app(Settings(inference_backend="embedded", model_base_path=tmp_path))
    assert current() == FOREIGN  # building the app is not starting it

    async def start_and_stop() -> tuple[int | None, int, int]:
        async with app.router.lifespan_context(app):
            return current()

    assert asyncio.run(start_and_stop()) == (None, PNG_TEXT_MEMORY_BYTES, 1)
