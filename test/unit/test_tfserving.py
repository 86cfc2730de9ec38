"""The TF Serving backend through httpx's mock transport: what it asks, sends and maps to errors."""

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import httpx
import numpy as np
import orjson
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

from gateway.backend import BatchPrediction, ModelStatus
from gateway.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    ServableGone,
)
from gateway.settings import Settings
from gateway.tfserving.client import TFServingBackend

MODEL_URL = "http://tfs:8501/v1/models/mobilenet"
T = TypeVar("T")


def metadata(dtype: str = "DT_UINT8", dims: tuple[int, ...] = (-1, 224, 224, 3)) -> dict:
    """TF Serving's metadata JSON (docs/tf-serving-protocol.md §2.2), with string dim sizes."""
    shape = {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}
    out_shape = {"dim": [{"size": "-1", "name": ""}, {"size": "1001", "name": ""}]}
    return {
        "model_spec": {"name": "mobilenet", "signature_name": "", "version": "1"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {"images": {"dtype": dtype, "tensor_shape": shape}},
                        "outputs": {
                            "probabilities": {"dtype": "DT_FLOAT", "tensor_shape": out_shape}
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def status(*versions: tuple[int, str]) -> dict:
    return {
        "model_version_status": [
            {"version": str(v), "state": s, "status": {"error_code": "OK", "error_message": ""}}
            for v, s in versions
        ]
    }


Handler = Callable[[httpx.Request], httpx.Response]


def tf_serving(
    predict: Handler, versions: tuple[tuple[int, str], ...] = ((1, "AVAILABLE"),)
) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v1/models/mobilenet":
            return httpx.Response(200, json=status(*versions))
        if request.method == "GET" and path.endswith("/metadata"):
            return httpx.Response(200, json=metadata())
        return predict(request)

    return handle


def against(
    handler: Handler, predict_url: str, call: Callable[[TFServingBackend], Awaitable[T]]
) -> T:
    """`call` on a started REST backend whose TF Serving is `handler`.

    Its watcher looks once at start-up, then only when a batch wakes it: nothing
    here depends on the poll period.
    """

    async def scenario() -> T:
        backend = TFServingBackend(
            Settings(
                tf_serving_url=predict_url, tf_serving_transport="rest", status_poll_seconds=3600
            ),
            transport=httpx.MockTransport(handler),
        )
        await backend.start()
        try:
            return await call(backend)
        finally:
            await backend.close()

    return asyncio.run(scenario())


def run(
    handler: Handler, images: np.ndarray | None = None, predict_url: str = f"{MODEL_URL}:predict"
) -> BatchPrediction:
    pixels = images if images is not None else np.zeros((1, 224, 224, 3), np.uint8)
    return against(handler, predict_url, lambda backend: backend.predict(pixels))


def test_pixels_travel_as_uint8_columnar_inputs_and_outputs_are_read() -> None:
    seen: dict = {}

    def predict(request: httpx.Request) -> httpx.Response:
        seen.update(orjson.loads(request.content))
        return httpx.Response(200, json={"outputs": [[0.5, 0.25] + [0.25 / 999] * 999]})

    images = np.full((1, 224, 224, 3), 7, np.uint8)
    result = run(tf_serving(predict), images)
    assert seen["signature_name"] == "serving_default"
    assert np.asarray(seen["inputs"]["images"]).shape == (1, 224, 224, 3)
    assert seen["inputs"]["images"][0][0][0] == [7, 7, 7]
    assert result.version == 1
    assert result.probabilities[0, 0] == 0.5


def test_named_outputs_are_picked_by_the_signature_output_name() -> None:
    row = [0.0] * 1001
    row[3] = 1.0
    body = {"outputs": {"probabilities": [row]}}
    result = run(tf_serving(lambda _: httpx.Response(200, json=body)))
    assert int(np.argmax(result.probabilities[0])) == 3


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (httpx.Response(400, json={"error": "input must be 4-dimensional"}), BackendError, "4-dim"),
        (httpx.Response(500, json={"error": "uninitialized value"}), BackendError, "uninitialized"),
        (httpx.Response(503, json={"error": "queue is full"}), BackendUnavailable, "queue"),
        (httpx.Response(504, json={"error": "deadline"}), BackendTimeout, "deadline"),
        (httpx.Response(404, json={"error": "Servable not found"}), BackendUnavailable, "Servable"),
        (httpx.Response(200, content=b"<html>"), BackendError, "cannot read"),
        (httpx.Response(200, json={"outputs": [[0.1, 0.9]]}), BackendError, "shape"),
    ],
)
def test_tf_serving_answers_map_to_gateway_errors(
    response: httpx.Response, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        run(tf_serving(lambda _: response))


def test_connection_refused_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(BackendUnavailable):
        run(tf_serving(refuse))


def test_read_timeout_is_a_timeout() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(BackendTimeout):
        run(tf_serving(stall))


def test_no_available_version_is_unavailable() -> None:
    never = tf_serving(lambda _: httpx.Response(200, json={}), versions=((2, "LOADING"),))
    with pytest.raises(BackendUnavailable, match="LOADING"):
        run(never)


def scores_with_best(class_id: int) -> dict:
    row = [0.0] * 1001
    row[class_id] = 1.0
    return {"outputs": [row]}


def test_each_batch_is_pinned_to_the_version_whose_labels_the_gateway_holds() -> None:
    paths: list[str] = []

    def predict(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=scores_with_best(3))

    result = run(tf_serving(predict, versions=((1, "AVAILABLE"),)))
    assert paths == ["/v1/models/mobilenet/versions/1:predict"]
    assert result.version == 1


def status_of(handler: Handler, predict_url: str) -> ModelStatus:
    return against(handler, predict_url, lambda backend: backend.status())


def pinned_server(
    routes: dict[str, httpx.Response], paths: list[str], predict: Handler | None = None
) -> Handler:
    """TF Serving answering GETs from `routes` (else 404) and POSTs with `predict`.

    Every request's method and path go to `paths`.
    """

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        paths.append(f"{request.method} {path}")
        if request.method == "POST":
            return predict(request) if predict else httpx.Response(200, json=scores_with_best(3))
        return routes.get(path, httpx.Response(404, json={"error": f"no route {path}"}))

    return handle


def test_a_pinned_version_is_asked_for_by_status_metadata_and_predict() -> None:
    paths: list[str] = []
    routes = {
        # The model lists version 2 too: a pinned gateway never asks for that list.
        "/v1/models/mobilenet": httpx.Response(200, json=status((2, "AVAILABLE"))),
        "/v1/models/mobilenet/versions/1": httpx.Response(200, json=status((1, "AVAILABLE"))),
        "/v1/models/mobilenet/versions/1/metadata": httpx.Response(200, json=metadata()),
    }
    result = run(pinned_server(routes, paths), predict_url=f"{MODEL_URL}/versions/1:predict")
    assert paths == [
        "GET /v1/models/mobilenet/versions/1",
        "GET /v1/models/mobilenet/versions/1/metadata",
        "POST /v1/models/mobilenet/versions/1:predict",
    ]
    assert result.version == 1


@pytest.mark.parametrize(
    ("answer", "state", "detail"),
    [
        (httpx.Response(200, json=status((1, "END"))), "END", "version 1 is END"),
        (httpx.Response(200, json=status((1, "LOADING"))), "LOADING", "version 1 is LOADING"),
        (
            httpx.Response(404, json={"error": "Could not find version 1 of model mobilenet"}),
            "NOT_FOUND",
            "Could not find version 1 of model mobilenet",
        ),
    ],
)
def test_a_pinned_gateway_is_ready_only_while_its_version_is_available(
    answer: httpx.Response, state: str, detail: str
) -> None:
    paths: list[str] = []
    routes = {
        "/v1/models/mobilenet": httpx.Response(200, json=status((2, "AVAILABLE"))),
        "/v1/models/mobilenet/versions/1": answer,
    }
    result = status_of(pinned_server(routes, paths), f"{MODEL_URL}/versions/1:predict")
    assert (result.ready, result.state) == (False, state)
    assert result.detail == f"TF_SERVING_URL pins version 1: {detail}"
    # The watcher's look and status() alike ask for the pinned version's status alone.
    assert set(paths) == {"GET /v1/models/mobilenet/versions/1"}


def test_a_pinned_version_that_is_unloaded_is_never_replaced_by_another() -> None:
    paths: list[str] = []
    routes = {
        "/v1/models/mobilenet": httpx.Response(200, json=status((2, "AVAILABLE"), (1, "END"))),
        "/v1/models/mobilenet/versions/1": httpx.Response(200, json=status((1, "AVAILABLE"))),
        "/v1/models/mobilenet/versions/1/metadata": httpx.Response(200, json=metadata()),
        "/v1/models/mobilenet/versions/2/metadata": httpx.Response(200, json=metadata()),
    }

    def gone(_: httpx.Request) -> httpx.Response:
        routes["/v1/models/mobilenet/versions/1"] = httpx.Response(200, json=status((1, "END")))
        body = {"error": "Servable not found for request: Specific(mobilenet, 1)"}
        return httpx.Response(404, json=body)

    with pytest.raises(ServableGone, match=r"Specific\(mobilenet, 1\)"):
        run(pinned_server(routes, paths, gone), predict_url=f"{MODEL_URL}/versions/1:predict")
    assert [path for path in paths if "2" in path] == []
    assert paths.count("POST /v1/models/mobilenet/versions/1:predict") == 1


def labelled(version: int) -> httpx.Response:
    document = metadata()
    document["model_spec"]["version"] = str(version)
    return httpx.Response(200, json=document)


LABEL_METADATA = "/v1/models/mobilenet/labels/stable/metadata"


def test_a_label_is_resolved_through_its_metadata_and_each_batch_sent_to_its_version() -> None:
    paths: list[str] = []
    routes = {
        "/v1/models/mobilenet": httpx.Response(
            200, json=status((2, "AVAILABLE"), (1, "AVAILABLE"))
        ),
        LABEL_METADATA: labelled(1),
    }
    result = run(pinned_server(routes, paths), predict_url=f"{MODEL_URL}/labels/stable:predict")
    # Status ignores labels (docs/tf-serving-protocol.md §2.1): the label's metadata
    # names the version, and its signature comes from that same document.
    assert paths == [
        "GET /v1/models/mobilenet",
        f"GET {LABEL_METADATA}",
        "POST /v1/models/mobilenet/versions/1:predict",
    ]
    assert result.version == 1


@pytest.mark.parametrize(
    ("answer", "state", "detail"),
    [
        (
            httpx.Response(400, json={"error": "Unrecognized servable version label: stable"}),
            "NOT_FOUND",
            "Unrecognized servable version label: stable",
        ),
        (
            httpx.Response(404, json={"error": "Servable not found: Specific(mobilenet, 3)"}),
            "NOT_FOUND",
            "Servable not found: Specific(mobilenet, 3)",
        ),
        (labelled(3), "LOADING", "it names version 3, which is LOADING"),
    ],
)
def test_a_label_that_names_no_available_version_is_not_ready(
    answer: httpx.Response, state: str, detail: str
) -> None:
    routes = {
        "/v1/models/mobilenet": httpx.Response(200, json=status((3, "LOADING"), (1, "AVAILABLE"))),
        LABEL_METADATA: answer,
    }
    result = status_of(pinned_server(routes, []), f"{MODEL_URL}/labels/stable:predict")
    assert (result.ready, result.state) == (False, state)
    assert result.detail == f"TF_SERVING_URL pins label 'stable': {detail}"
    assert result.document == status((3, "LOADING"), (1, "AVAILABLE"))


def test_a_batch_follows_its_label_to_the_version_it_names_now() -> None:
    paths: list[str] = []
    routes = {
        "/v1/models/mobilenet": httpx.Response(
            200, json=status((2, "AVAILABLE"), (1, "AVAILABLE"))
        ),
        LABEL_METADATA: labelled(1),
    }

    def predict(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/versions/1:predict"):
            routes["/v1/models/mobilenet"] = httpx.Response(
                200, json=status((2, "AVAILABLE"), (1, "END"))
            )
            routes[LABEL_METADATA] = labelled(2)
            return httpx.Response(404, json={"error": "Servable not found"})
        return httpx.Response(200, json=scores_with_best(7))

    result = run(
        pinned_server(routes, paths, predict), predict_url=f"{MODEL_URL}/labels/stable:predict"
    )
    assert [path for path in paths if path.startswith("POST")] == [
        "POST /v1/models/mobilenet/versions/1:predict",
        "POST /v1/models/mobilenet/versions/2:predict",
    ]
    assert result.version == 2


GrpcPredict = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def predict_response(version: int, rows: int = 1) -> bytes:
    """A serialized PredictResponse from `version`: uniform scores over 1001 classes."""
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "mobilenet"
    response.model_spec.version.value = version
    tensor = response.outputs["probabilities"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = rows
    tensor.tensor_shape.dim.add().size = 1001
    tensor.float_val.extend([1.0 / 1001] * 1001 * rows)
    return bytes(response.SerializeToString())


@contextlib.asynccontextmanager
async def grpc_serving(predict: GrpcPredict) -> AsyncIterator[str]:
    """A gRPC server whose PredictionService/Predict is `predict`; yields its address."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(predict)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService", {"Predict": handler}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def against_grpc(
    rest: Handler,
    predict: GrpcPredict,
    call: Callable[[TFServingBackend], Awaitable[T]],
    predict_url: str = f"{MODEL_URL}:predict",
    **settings: float,
) -> T:
    """`call` on a started gRPC backend whose TF Serving is `rest` and `predict`."""

    async def scenario() -> T:
        async with grpc_serving(predict) as target:
            backend = TFServingBackend(
                Settings(
                    tf_serving_url=predict_url,
                    tf_serving_grpc_target=target,
                    tf_serving_transport="grpc",
                    **{"status_poll_seconds": 3600.0, **settings},
                ),
                transport=httpx.MockTransport(rest),
            )
            await backend.start()
            try:
                return await call(backend)
            finally:
                await backend.close()

    return asyncio.run(scenario())


def predict_one(backend: TFServingBackend) -> Awaitable[BatchPrediction]:
    return backend.predict(np.zeros((1, 224, 224, 3), np.uint8))


class PredictRecorder:
    """A gRPC PredictionService whose Predict records each request and answers version 1."""

    def __init__(self) -> None:
        self.requests: list[predict_pb2.PredictRequest] = []

    async def predict(self, request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        self.requests.append(predict_pb2.PredictRequest.FromString(request))
        return predict_response(1)


@pytest.mark.parametrize(
    ("selector", "status_path"),
    [
        ("", "/v1/models/mobilenet"),
        ("/versions/1", "/v1/models/mobilenet/versions/1"),
        ("/labels/can%20ary", "/v1/models/mobilenet"),
    ],
)
def test_grpc_predict_names_the_version_whose_signature_the_gateway_holds(
    selector: str, status_path: str
) -> None:
    # As REST's `.../versions/N:predict`: the pinned version, the label's at the
    # watcher's last look, or the newest then; never "whichever is newest now".
    routes = {
        status_path: httpx.Response(200, json=status((1, "AVAILABLE"))),
        "/v1/models/mobilenet/versions/1/metadata": httpx.Response(200, json=metadata()),
        "/v1/models/mobilenet/labels/can ary/metadata": labelled(1),
    }
    recorder = PredictRecorder()
    result = against_grpc(
        pinned_server(routes, []), recorder.predict, predict_one, f"{MODEL_URL}{selector}:predict"
    )
    assert result.version == 1
    (request,) = recorder.requests
    spec = request.model_spec
    assert (spec.name, spec.signature_name) == ("mobilenet", "serving_default")
    assert spec.WhichOneof("version_choice") == "version"
    assert spec.version.value == 1


def aborting(code: grpc.StatusCode, details: str, after_seconds: float = 0.0) -> GrpcPredict:
    """A Predict that ends every call with `code` and `details`, after `after_seconds`."""

    async def predict(_request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(after_seconds)
        await context.abort(code, details)
        raise AssertionError("abort returns only by raising")

    return predict


def grpc_failure(predict: GrpcPredict, **settings: float) -> GatewayError:
    """What a batch sent to `predict` over gRPC raises."""
    with pytest.raises(GatewayError) as caught:
        against_grpc(tf_serving(lambda _: httpx.Response(404)), predict, predict_one, **settings)
    return caught.value


def test_a_reply_over_the_grpc_size_cap_is_a_model_error_not_a_retry() -> None:
    details = "Received message larger than max (300000000 vs. 268435456)"
    error = grpc_failure(aborting(grpc.StatusCode.RESOURCE_EXHAUSTED, details))
    # The same batch fails the same way every time: 502, no Retry-After.
    assert type(error) is BackendError
    assert str(error) == f"A predict message is over gRPC's size limit: {details}"


def test_a_full_queue_is_still_overloaded() -> None:
    error = grpc_failure(aborting(grpc.StatusCode.RESOURCE_EXHAUSTED, "Batch queue is full"))
    assert type(error) is BackendUnavailable
    assert str(error) == "TF Serving is overloaded: Batch queue is full"


def test_tf_serving_s_own_deadline_is_not_worded_as_the_gateway_s() -> None:
    error = grpc_failure(aborting(grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out in the queue"))
    assert type(error) is BackendTimeout
    assert "within" not in str(error)
    assert re.fullmatch(
        r"TF Serving's predict ended DEADLINE_EXCEEDED after \d+\.\d s "
        r"\(the gateway waits 10 s\): Timed out in the queue",
        str(error),
    ), str(error)


def test_the_gateway_s_own_deadline_names_its_timeout() -> None:
    predict = aborting(grpc.StatusCode.OK, "never sent", after_seconds=5)
    error = grpc_failure(predict, tf_serving_timeout_seconds=0.3)
    assert type(error) is BackendTimeout
    assert str(error) == "TF Serving did not answer within 0.3 s."


def version_switch(v2_dims: tuple[int, ...], paths: list[str]) -> Handler:
    """TF Serving unloading version 1 for version 2, as its default policy does.

    Version 1 answers its first predict with 404 and the status then lists only
    version 2 (input `v2_dims`), which scores class 7 best. Predict paths go to `paths`.
    """
    served = {"versions": ((1, "AVAILABLE"),)}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v1/models/mobilenet":
            return httpx.Response(200, json=status(*served["versions"]))
        if path.endswith("/versions/2/metadata"):
            return httpx.Response(200, json=metadata(dims=v2_dims))
        if path.endswith("/metadata"):
            return httpx.Response(200, json=metadata())
        paths.append(path)
        if path.endswith("/versions/1:predict"):
            served["versions"] = ((1, "END"), (2, "AVAILABLE"))
            body = {"error": "Servable not found for request: Specific(mobilenet, 1)"}
            return httpx.Response(404, json=body)
        return httpx.Response(200, json=scores_with_best(7))

    return handle


def test_a_batch_for_an_unloaded_version_is_sent_again_to_the_new_one() -> None:
    paths: list[str] = []
    result = run(version_switch((-1, 224, 224, 3), paths))
    assert paths == [
        "/v1/models/mobilenet/versions/1:predict",
        "/v1/models/mobilenet/versions/2:predict",
    ]
    assert result.version == 2
    assert int(np.argmax(result.probabilities[0])) == 7


def test_no_second_attempt_when_the_new_version_wants_other_pixels() -> None:
    # Pixels resized for version 1's 224x224 cannot feed version 2's 192x192:
    # the batch fails as unavailable (503, retry) rather than as a bad request.
    paths: list[str] = []
    with pytest.raises(BackendUnavailable, match="Servable not found"):
        run(version_switch((-1, 192, 192, 3), paths))
    assert paths == ["/v1/models/mobilenet/versions/1:predict"]
