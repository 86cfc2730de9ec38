"""/model through the app in front of a TF Serving whose versions roll: one version per document."""

import asyncio
from pathlib import Path

import httpx

from api_client import in_process
from fake_backend import fake_settings, write_model_files
from gateway.tfserving.client import TFServingBackend
from test_tfserving import MODEL_URL, metadata
from test_tfserving_watcher import RollingServer


def test_model_names_the_version_whose_signature_is_held_until_the_new_one_is_read(
    tmp_path: Path,
) -> None:
    model_root = write_model_files(tmp_path, 1)
    write_model_files(tmp_path, 2)
    server = RollingServer()
    server.metadata[2] = metadata(dims=(-1, 192, 192, 3))
    server.metadata[2]["model_spec"]["version"] = "2"
    settings = fake_settings(
        model_root,
        tf_serving_url=f"{MODEL_URL}:predict",
        tf_serving_transport="rest",
        status_poll_seconds=3600,
    )

    async def scenario() -> list[dict]:
        backend = TFServingBackend(settings, transport=httpx.MockTransport(server))
        async with in_process(settings, backend) as client:
            await backend.signature()  # the watcher's first look has ended
            documents = [(await client.get("/model")).json()]
            # TF Serving serves version 2; the watcher (hourly here) has not read it.
            server.versions = ((2, "AVAILABLE"), (1, "AVAILABLE"))
            documents.append((await client.get("/model")).json())
        return documents

    before, during = asyncio.run(scenario())
    for document in (before, during):
        assert (document["version"], document["model_spec"]["version"]) == (1, "1")
        assert document["signature"]["inputs"]["images"]["shape"] == [-1, 224, 224, 3]
        assert document["state"] == "AVAILABLE"
