"""The TF Serving client: protocol parsing and error mapping, through httpx's mock transport."""

import asyncio
from collections.abc import Callable

import httpx
import numpy as np
import orjson
import pytest

from gateway.errors import BackendError, BackendTimeout, BackendUnavailable
from gateway.settings import Settings
from gateway.tfserving import TFServingBackend, parse_signature

MODEL_URL = "http://tfs:8501/v1/models/mobilenet"


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


def run(
    handler: Handler, images: np.ndarray | None = None, predict_url: str = f"{MODEL_URL}:predict"
) -> object:
    async def scenario() -> object:
        backend = TFServingBackend(
            Settings(tf_serving_url=predict_url, tf_serving_transport="rest"),
            transport=httpx.MockTransport(handler),
        )
        await backend.start()
        try:
            return await backend.predict(
                images if images is not None else np.zeros((1, 224, 224, 3), np.uint8)
            )
        finally:
            await backend.close()

    return asyncio.run(scenario())


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
    assert result.version == 1  # type: ignore[attr-defined]
    assert result.probabilities[0, 0] == 0.5  # type: ignore[attr-defined]


def test_named_outputs_are_picked_by_the_signature_output_name() -> None:
    row = [0.0] * 1001
    row[3] = 1.0
    body = {"outputs": {"probabilities": [row]}}
    result = run(tf_serving(lambda _: httpx.Response(200, json=body)))
    assert int(np.argmax(result.probabilities[0])) == 3  # type: ignore[attr-defined]


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


def test_signature_gives_names_and_image_size() -> None:
    signature = parse_signature(metadata(dims=(-1, 192, 160, 3)), version=4)
    assert signature.input_name == "images"
    assert signature.output_name == "probabilities"
    assert signature.image_size == (160, 192)
    assert signature.num_classes == 1001
    assert signature.version == 4


def test_a_float_input_signature_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="DT_FLOAT"):
        parse_signature(metadata(dtype="DT_FLOAT"), version=1)


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
    assert result.version == 1  # type: ignore[attr-defined]


def test_a_version_chosen_in_tf_serving_url_is_left_alone() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v1/models/mobilenet/labels/stable":
            return httpx.Response(200, json=status((1, "AVAILABLE")))
        if path.endswith("/metadata"):
            return httpx.Response(200, json=metadata())
        paths.append(path)
        return httpx.Response(200, json=scores_with_best(3))

    run(handle, predict_url=f"{MODEL_URL}/labels/stable:predict")
    assert paths == ["/v1/models/mobilenet/labels/stable:predict"]


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
    assert result.version == 2  # type: ignore[attr-defined]
    assert int(np.argmax(result.probabilities[0])) == 7  # type: ignore[attr-defined]


def test_no_second_attempt_when_the_new_version_wants_other_pixels() -> None:
    # Pixels resized for version 1's 224x224 cannot feed version 2's 192x192:
    # the batch fails as unavailable (503, retry) rather than as a bad request.
    paths: list[str] = []
    with pytest.raises(BackendUnavailable, match="Servable not found"):
        run(version_switch((-1, 192, 192, 3), paths))
    assert paths == ["/v1/models/mobilenet/versions/1:predict"]
