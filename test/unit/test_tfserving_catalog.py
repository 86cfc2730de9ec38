"""What TF Serving serves, read over its REST API; and the fleet's 404/503 rules built on it.

TF Serving answers through httpx.MockTransport with the documents it sends: the
model status (`GET /v1/models/M`, TFS/model_servers/http_rest_api_handler.cc),
and metadata by version or label; an unknown label is InvalidArgument, which REST
answers 400 (TFS/model_servers/server_core.cc, GetModelVersionForLabel).
"""

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_backend import IMAGE_SIZE, NUM_CLASSES, fake_settings
from gateway.backend import ModelSignature
from gateway.errors import BackendUnavailable, UnknownVersion
from gateway.model_config import ModelEntry
from gateway.served_versions import ServedVersions
from gateway.serving_documents import metadata_document
from gateway.target import Target
from gateway.tfserving.catalog import TFServingCatalog, VersionState

pytestmark = pytest.mark.anyio

URL = "http://tfserving:8501/v1/models/mobilenet/versions/7:predict"


@dataclass
class FakeTFServing:
    """The REST answers of a TF Serving holding `versions` (state by number) and `labels`."""

    versions: dict[str, dict[int, str]] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    down: bool = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append(path)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        parts = path.removeprefix("/v1/models/").split("/")
        model = parts[0]
        if model not in self.versions:
            return httpx.Response(404, json={"error": f"Servable not found for {model}"})
        if len(parts) == 1:
            return httpx.Response(200, json=self.status(model))
        kind, name, _ = parts[1:]
        if kind == "labels":
            version = self.labels.get(model, {}).get(name)
            if version is None:
                error = f"Unrecognized servable version label: {name}"
                return httpx.Response(400, json={"error": error})
        else:
            version = int(name)
            if self.versions[model].get(version) != "AVAILABLE":
                return httpx.Response(404, json={"error": "Servable not found"})
        signature = ModelSignature(version, "images", "probabilities", IMAGE_SIZE, NUM_CLASSES)
        return httpx.Response(200, json=metadata_document(model, signature))

    def status(self, model: str) -> dict[str, Any]:
        return {
            "model_version_status": [
                {
                    "version": str(version),
                    "state": state,
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for version, state in self.versions[model].items()
            ]
        }


@pytest.fixture
def tfserving() -> FakeTFServing:
    return FakeTFServing(
        versions={"mobilenet": {1: "END", 2: "AVAILABLE", 3: "AVAILABLE", 4: "LOADING"}},
        labels={"mobilenet": {"stable": 2, "canary": 3}},
    )


@pytest.fixture
async def catalog(tfserving: FakeTFServing) -> AsyncIterator[TFServingCatalog]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(tfserving))
    settings = fake_settings(Path("."), tf_serving_url=URL, inference_backend="tfserving")
    catalog = TFServingCatalog(settings, client)
    yield catalog
    await catalog.close()


def entry(labels: dict[str, int] | None = None) -> ModelEntry:
    return ModelEntry("mobilenet", Path("models/mobilenet"), labels=labels or {})


async def test_versions_are_listed_highest_first_with_their_states(
    catalog: TFServingCatalog, tfserving: FakeTFServing
) -> None:
    assert await catalog.versions("mobilenet") == [
        VersionState(4, "LOADING"),
        VersionState(3, "AVAILABLE"),
        VersionState(2, "AVAILABLE"),
        VersionState(1, "END"),
    ]
    # Whatever version TF_SERVING_URL pins, the model's status is asked of the server.
    assert tfserving.requests == ["/v1/models/mobilenet"]


async def test_a_model_tf_serving_lacks_has_no_versions(catalog: TFServingCatalog) -> None:
    assert await catalog.versions("resnet") == []


async def test_a_failed_version_carries_its_error() -> None:
    def failed(request: httpx.Request) -> httpx.Response:
        status = {"error_code": "NOT_FOUND", "error_message": "no SavedModel bundle"}
        body = {"model_version_status": [{"version": "5", "state": "END", "status": status}]}
        return httpx.Response(200, json=body)

    async with scoped_catalog(failed) as catalog:
        assert await catalog.versions("mobilenet") == [
            VersionState(5, "END", "no SavedModel bundle")
        ]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"model_version_status": [{"version": "x", "state": "END"}]}),
        httpx.Response(200, json={"model_version_status": [{"state": "AVAILABLE"}]}),
        httpx.Response(200, json={"something": "else"}),
        httpx.Response(200, json={"model_version_status": [{"version": "1", "state": "END"}, 7]}),
        httpx.Response(500, json={"error": "internal"}),
    ],
)
async def test_an_unreadable_status_is_model_unavailable(answer: httpx.Response) -> None:
    async with scoped_catalog(lambda _: answer) as catalog:
        with pytest.raises(BackendUnavailable) as unavailable:
            await catalog.versions("mobilenet")
    assert unavailable.value.detail == "TF Serving sent an unreadable status for mobilenet"


async def test_a_status_that_is_not_an_object_is_a_version_without_an_error_message() -> None:
    body = {"model_version_status": [{"version": "1", "state": "END", "status": "broken"}]}
    async with scoped_catalog(lambda _: httpx.Response(200, json=body)) as catalog:
        assert await catalog.versions("mobilenet") == [VersionState(1, "END", "")]


async def test_an_unreachable_server_is_model_unavailable_without_its_url(
    catalog: TFServingCatalog, tfserving: FakeTFServing
) -> None:
    tfserving.down = True
    with pytest.raises(BackendUnavailable) as unavailable:
        await catalog.versions("mobilenet")
    assert unavailable.value.detail == "TF Serving is not reachable"


async def test_a_label_resolves_to_its_version_and_an_unknown_one_to_none(
    catalog: TFServingCatalog,
) -> None:
    assert await catalog.label_version("mobilenet", "canary") == 3
    assert await catalog.label_version("mobilenet", "stable") == 2
    assert await catalog.label_version("mobilenet", "beta") is None
    assert await catalog.label_version("resnet", "stable") is None


async def test_signatures_are_read_once_while_the_version_is_listed(
    catalog: TFServingCatalog, tfserving: FakeTFServing
) -> None:
    first = await catalog.signature("mobilenet", 3)
    assert first is not None
    assert (first.version, first.image_size, first.num_classes) == (3, IMAGE_SIZE, NUM_CLASSES)
    assert await catalog.signature("mobilenet", 3) == first
    assert tfserving.requests.count("/v1/models/mobilenet/versions/3/metadata") == 1
    # Once the version is gone from the status, its signature is read again.
    tfserving.versions["mobilenet"][3] = "END"
    await catalog.versions("mobilenet")
    tfserving.versions["mobilenet"][3] = "AVAILABLE"
    assert await catalog.signature("mobilenet", 3) == first
    assert tfserving.requests.count("/v1/models/mobilenet/versions/3/metadata") == 2


async def test_a_version_without_usable_metadata_has_no_signature(
    catalog: TFServingCatalog,
) -> None:
    assert await catalog.signature("mobilenet", 4) is None  # LOADING: 404


async def test_a_version_tf_serving_lists_available_is_served(catalog: TFServingCatalog) -> None:
    served = ServedVersions(catalog, from_config_file=False)
    await served.check_version(entry(), 3)


@pytest.mark.parametrize("version", [1, 9])
async def test_a_version_ended_or_never_listed_is_404_naming_the_available_ones(
    catalog: TFServingCatalog, version: int
) -> None:
    served = ServedVersions(catalog, from_config_file=False)
    with pytest.raises(UnknownVersion) as unknown:
        await served.check_version(entry(), version)
    assert unknown.value.detail == (
        f"Model 'mobilenet' has no version {version} served; served versions: 2, 3."
    )


async def test_a_version_still_loading_is_503(catalog: TFServingCatalog) -> None:
    served = ServedVersions(catalog, from_config_file=False)
    with pytest.raises(BackendUnavailable) as loading:
        await served.check_version(entry(), 4)
    assert not isinstance(loading.value, UnknownVersion)
    assert loading.value.detail == "mobilenet version 4 is LOADING"


async def test_without_a_config_file_a_label_is_whatever_tf_serving_resolves(
    catalog: TFServingCatalog,
) -> None:
    served = ServedVersions(catalog, from_config_file=False)
    # The lane is pinned to the label, not to the version it names now: it follows the label.
    assert await served.label_target(entry(), "canary") == Target("mobilenet", label="canary")
    with pytest.raises(UnknownVersion) as unknown:
        await served.label_target(entry(), "beta")
    assert unknown.value.detail == "TF Serving has no version label 'beta' for 'mobilenet'."


async def test_with_a_config_file_an_unconfigured_label_is_404_without_asking(
    catalog: TFServingCatalog, tfserving: FakeTFServing
) -> None:
    served = ServedVersions(catalog, from_config_file=True)
    with pytest.raises(UnknownVersion) as unknown:
        await served.label_target(entry({"stable": 2}), "canary")
    assert unknown.value.detail == (
        "Model 'mobilenet' has no version label 'canary'; its labels: stable."
    )
    assert tfserving.requests == []


async def test_a_configured_label_tf_serving_has_not_applied_yet_is_503(
    catalog: TFServingCatalog,
) -> None:
    served = ServedVersions(catalog, from_config_file=True)
    with pytest.raises(BackendUnavailable) as waiting:
        await served.label_target(entry({"beta": 4}), "beta")
    assert not isinstance(waiting.value, UnknownVersion)
    assert waiting.value.detail == "TF Serving does not resolve label 'beta' of 'mobilenet' yet."


async def test_what_is_served_now_is_unknown_while_tf_serving_is_down(
    catalog: TFServingCatalog, tfserving: FakeTFServing
) -> None:
    served = ServedVersions(catalog, from_config_file=True)
    assert await served.now(entry()) == ({2, 3}, {2, 3, 4})
    tfserving.down = True
    assert await served.now(entry()) is None  # not "nothing": lanes are not retired for it


def scoped_catalog(
    handler: Callable[[httpx.Request], httpx.Response],
) -> "contextlib.AbstractAsyncContextManager[TFServingCatalog]":
    @contextlib.asynccontextmanager
    async def scope() -> AsyncIterator[TFServingCatalog]:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        catalog = TFServingCatalog(
            fake_settings(Path("."), tf_serving_url=URL, inference_backend="tfserving"), client
        )
        try:
            yield catalog
        finally:
            await catalog.close()

    return scope()
