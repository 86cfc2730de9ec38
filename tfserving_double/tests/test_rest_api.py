"""The TF Serving double (tfserving_double/), driven as a subprocess over real HTTP.

Expected values come from docs/tf-serving-protocol.md and the TF Serving
sources it cites (http_rest_api_handler_test.cc, json_tensor_test.cc,
saved_model_half_plus_two_2_versions_metadata.json).
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

import double_models
from double_process import READY_PREFIX, Double, serve, wait_until
from processes import free_port

HALF = "half_plus_two"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    (root / HALF).mkdir()
    double_models.publish(str(root / HALF), 1, double_models.write_half_plus_two)
    (root / "mobilenet").mkdir()

    def image_with_warmup(path: str) -> None:
        double_models.write_image_model(path, seed=7)
        zeros = np.zeros((2, *double_models.IMAGE_SHAPE), np.uint8)
        double_models.write_warmup_requests(path, [{"images": zeros}])

    double_models.publish(str(root / "mobilenet"), 1, image_with_warmup)
    return root


@pytest.fixture(scope="module")
def half(store: Path, control_port: int) -> Iterator[Double]:
    double = Double(
        store / "half.log",
        f"--model_name={HALF}",
        f"--model_base_path={store / HALF}",
        f"--control_port={control_port}",
        "--rest_api_timeout_in_ms=1000",
        "--port=0",
        "--bogus_flag=1",
    )
    yield from serve(double)


@pytest.fixture(scope="module")
def image(store: Path) -> Iterator[Double]:
    double = Double(
        store / "image.log",
        "--model_name=mobilenet",
        f"--model_base_path={store / 'mobilenet'}",
    )
    yield from serve(double)


def post(
    client: httpx.Client, double: Double, path: str, body: bytes | str | dict
) -> httpx.Response:
    content = orjson.dumps(body) if isinstance(body, dict) else body
    return client.post(double.url + path, content=content)


def available(version: str) -> dict:
    return {
        "version": version,
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


# Model status and metadata


def test_ready_line_names_model_and_versions(half: Double) -> None:
    assert half.ready_line == f"{READY_PREFIX}{half.port} serving {HALF} versions [1]"


def test_unknown_flag_is_reported_and_ignored(half: Double) -> None:
    assert "unknown argument: --bogus_flag=1" in half.log()


def test_status_has_tf_serving_shape(half: Double, client: httpx.Client) -> None:
    for path in (f"/v1/models/{HALF}", f"/v1/models/{HALF}/versions/1"):
        response = client.get(half.url + path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"model_version_status": [available("1")]}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v1/models", 400, "Missing model name in request."),
        ("/v1/models/nope", 404, "Could not find any versions of model nope"),
        (f"/v1/models/{HALF}/versions/7", 404, f"Could not find version 7 of model {HALF}"),
        (
            f"/v1/models/{HALF}/versions/abc",
            400,
            f"Malformed request: GET /v1/models/{HALF}/versions/abc",
        ),
        (
            f"/v1/models/{HALF}/version/1",
            400,
            f"Malformed request: GET /v1/models/{HALF}/version/1",
        ),
        (
            f"/v1/models/{HALF}/labels/stable/metadata",
            400,
            "Unrecognized servable version label: stable",
        ),
        ("/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
        (
            f"/v1/models/{HALF}/versions/3/metadata",
            404,
            f"Servable not found for request: Specific({HALF}, 3)",
        ),
        (f"/v1/models/{HALF}?x=1", 404, f"Could not find any versions of model {HALF}?x=1"),
    ],
)
def test_status_and_metadata_errors(
    half: Double, client: httpx.Client, path: str, status: int, message: str
) -> None:
    response = client.get(half.url + path)
    assert (response.status_code, response.json()) == (status, {"error": message})
    assert response.headers["content-type"] == "application/json"


def test_status_ignores_version_label_like_get_model_status_impl(
    half: Double, client: httpx.Client
) -> None:
    response = client.get(f"{half.url}/v1/models/{HALF}/labels/stable")
    assert response.json() == {"model_version_status": [available("1")]}


def test_version_beyond_int64_is_400_with_empty_body(half: Double, client: httpx.Client) -> None:
    response = post(
        client, half, f"/v1/models/{HALF}/versions/{2**64}:predict", '{"instances": [1]}'
    )
    assert (response.status_code, response.content) == (400, b"")


def test_metadata_matches_tf_serving_fixture(half: Double, client: httpx.Client) -> None:
    body = client.get(f"{half.url}/v1/models/{HALF}/metadata").json()
    assert body["model_spec"] == {"name": HALF, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "add_sub", "echo_bytes", "__saved_model_init_op"} <= set(signatures)
    column = {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
    }
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["defaults"] == {}
    assert {key: value for key, value in default["inputs"]["x"].items() if key != "name"} == column
    assert {key: value for key, value in default["outputs"]["y"].items() if key != "name"} == column
    assert default["inputs"]["x"]["name"].endswith(":0")


def test_image_metadata_follows_the_model_contract(image: Double, client: httpx.Client) -> None:
    signature = client.get(f"{image.url}/v1/models/mobilenet/metadata").json()["metadata"][
        "signature_def"
    ]["signature_def"]["serving_default"]
    images = signature["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [dim["size"] for dim in images["tensor_shape"]["dim"]] == ["-1", "224", "224", "3"]
    probabilities = signature["outputs"]["probabilities"]
    assert probabilities["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in probabilities["tensor_shape"]["dim"]] == ["-1", "1001"]


def test_non_v1_paths_get_libevent_html_404(half: Double, client: httpx.Client) -> None:
    for path in ("/", "/v2/models/x", "/v1", "/monitoring/prometheus/metrics", "/faults"):
        response = client.get(half.url + path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "<H1>Not Found</H1>" in response.text


# Predict


def test_predict_reference_examples(half: Double, client: httpx.Client) -> None:
    cases = [
        (
            f"/v1/models/{HALF}:predict",
            {"instances": [[1.0, 2.0], [3.0, 4.0]]},
            {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        ),
        (
            f"/v1/models/{HALF}/versions/1:predict",
            {"instances": [1.0, 2.0]},
            {"predictions": [2.5, 3.0]},
        ),
        (
            f"/v1/models/{HALF}:predict",
            {"signature_name": "serving_default", "instances": [3.0, 4.0]},
            {"predictions": [3.5, 4.0]},
        ),
        (f"/v1/models/{HALF}:predict", {"inputs": [3.0, 4.0]}, {"outputs": [3.5, 4.0]}),
        (f"/v1/models/{HALF}:predict", {"instances": [{"x": 1}]}, {"predictions": [2.5]}),
    ]
    for path, body, expected in cases:
        response = post(client, half, path, body)
        assert (response.status_code, response.json()) == (200, expected)
        assert response.headers["content-type"] == "application/json"


def test_predict_several_inputs_and_outputs(half: Double, client: httpx.Client) -> None:
    path = f"/v1/models/{HALF}:predict"
    rows = post(
        client,
        half,
        path,
        {"signature_name": "add_sub", "instances": [{"a": 1, "b": 2}, {"a": 5, "b": 3}]},
    )
    assert rows.json() == {
        "predictions": [{"difference": -1.0, "sum": 3.0}, {"difference": 2.0, "sum": 8.0}]
    }
    columns = post(
        client,
        half,
        path,
        {"signature_name": "add_sub", "inputs": {"a": [1, 5], "b": [2, 3], "extra": 0}},
    )
    assert columns.json() == {"outputs": {"difference": [-1.0, 2.0], "sum": [3.0, 8.0]}}


def test_predict_strings_and_b64(half: Double, client: httpx.Client) -> None:
    response = post(
        client,
        half,
        f"/v1/models/{HALF}:predict",
        {"signature_name": "echo_bytes", "instances": [{"b64": "aGVsbG8="}, "world!"]},
    )
    assert response.json() == {
        "predictions": [
            {"echo_bytes": {"b64": "aGVsbG8="}, "length": 5},
            {"echo_bytes": {"b64": "d29ybGQh"}, "length": 6},
        ]
    }


def test_predict_accepts_nan_inf_tokens_and_trailing_bytes(
    half: Double, client: httpx.Client
) -> None:
    response = post(
        client,
        half,
        f"/v1/models/{HALF}:predict",
        '{"instances": [NaN, Inf, -Infinity, 1e39, 1]} trailing bytes',
    )
    assert response.status_code == 200
    assert response.text.replace(" ", "") == '{"predictions":[NaN,Infinity,-Infinity,Infinity,2.5]}'


def test_predict_accepts_gzip_bodies(half: Double, client: httpx.Client) -> None:
    response = client.post(
        f"{half.url}/v1/models/{HALF}:predict",
        content=gzip.compress(b'{"inputs": [1.0, 2.0]}'),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.json() == {"outputs": [2.5, 3.0]}


PREDICT = f"/v1/models/{HALF}:predict"
ELEMENT = "Failed to process element: {} of 'instances' list. Error: INVALID_ARGUMENT: {}"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (PREDICT, "", 400, "JSON Parse error: The document is empty"),
        (PREDICT, "instances = [1, 2]", 400, "JSON Parse error: Invalid value. at offset: 0"),
        (
            "/v1/models/nope:predict",
            "{",
            400,
            "JSON Parse error: Missing a name for object member. at offset: 1",
        ),
        (PREDICT, "[1]", 400, "JSON Value: [\n    1\n] Is not object"),
        (
            PREDICT,
            '{"signature_name": 100}',
            400,
            'JSON Value: {\n    "signature_name": 100\n} not formatted correctly. '
            "'signature_name' key must be a string value.",
        ),
        (
            "/v1/models/nope:predict",
            '{"instances": [1]}',
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            f"/v1/models/{HALF}/versions/99:predict",
            '{"instances": [1]}',
            404,
            f"Servable not found for request: Specific({HALF}, 99)",
        ),
        (
            f"/v1/models/{HALF}/labels/stable:predict",
            '{"instances": [1]}',
            400,
            "Unrecognized servable version label: stable",
        ),
        (
            PREDICT,
            '{"signature_name": "foo", "instances": [1]}',
            400,
            'Serving signature name: "foo" not found in signature def',
        ),
        (
            PREDICT,
            '{"signature_name": "__saved_model_init_op", "instances": [1]}',
            400,
            "Failed to get input map for signature: __saved_model_init_op",
        ),
        (PREDICT, '{"x": [1]}', 400, "Missing 'inputs' or 'instances' key"),
        (
            PREDICT,
            '{"instances": [1], "inputs": [1]}',
            400,
            'JSON Value: {\n    "instances": [\n        1\n    ],\n'
            '    "inputs": [\n        1\n    ]\n}'
            " Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        ),
        (
            PREDICT,
            '{"instances": 5}',
            400,
            "JSON Value: {\n    \"instances\": 5\n} Expecting 'instances' to be an list/array",
        ),
        (
            PREDICT,
            '{"instances": []}',
            400,
            "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array",
        ),
        (
            PREDICT,
            '{"instances": ["x", "y"]}',
            400,
            ELEMENT.format(0, 'JSON Value: "x" Type: String is not of expected type: float'),
        ),
        (
            PREDICT,
            '{"inputs": [1, true]}',
            400,
            "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            PREDICT,
            '{"instances": [[1, 2], [3, 4], [5, 6, 7]]}',
            400,
            ELEMENT.format(2, "Expecting tensor size: 2 but got: 3"),
        ),
        (
            PREDICT,
            '{"instances": [[1, 2], [3, 4], [[5, 6]]]}',
            400,
            ELEMENT.format(2, "Expecting shape [2] but got: [1,2]"),
        ),
        (
            PREDICT,
            '{"inputs": [[1, [2]]]}',
            400,
            "Encountered list at unexpected level: 2 expected < 2",
        ),
        (
            PREDICT,
            '{"inputs": [[1, 2], [3]]}',
            400,
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (
            PREDICT,
            '{"signature_name": "add_sub", "instances": [1, 2]}',
            400,
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map",
        ),
        (
            PREDICT,
            '{"signature_name": "add_sub", "instances": [{"a": 1, "b": 2}, {"a": 3}]}',
            400,
            "Failed to process element: 1 of 'instances' list. JSON object: {\n    \"a\": 3\n} "
            "keys must be equal to: a,b",
        ),
        (
            PREDICT,
            '{"signature_name": "add_sub", "inputs": {"a": [1]}}',
            400,
            "Missing named input: b in 'inputs' object.",
        ),
        (
            PREDICT,
            '{"signature_name": "echo_bytes", "inputs": [{"b64": "a$$"}]}',
            400,
            "Unable to base64 decode",
        ),
        (
            PREDICT,
            '{"signature_name": "float16_input", "inputs": [1.5]}',
            501,
            "Conversion of JSON Value: 1.5 to type: half",
        ),
        (
            PREDICT,
            '{"signature_name": "float16_input", "instances": [1.5]}',
            400,
            "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: "
            "Conversion of JSON Value: 1.5 to type: half",
        ),
        (
            f"/v1/models/{HALF}:PREDICT",
            '{"instances": [1]}',
            400,
            f"Malformed request: POST /v1/models/{HALF}:PREDICT",
        ),
        (f"{PREDICT}?x=1", '{"instances": [1]}', 400, f"Malformed request: POST {PREDICT}?x=1"),
        (
            f"/v1/models/{HALF}/metadata",
            "{}",
            400,
            f"Malformed request: POST /v1/models/{HALF}/metadata",
        ),
        (
            f"/v1/models/{HALF}:classify",
            "{}",
            501,
            "classify is not implemented by the TF Serving double",
        ),
    ],
)
def test_predict_error_table(
    half: Double, client: httpx.Client, path: str, body: str, status: int, message: str
) -> None:
    response = post(client, half, path, body)
    assert (response.status_code, response.json()) == (status, {"error": message})
    assert response.headers["content-type"] == "application/json"


def test_methods_other_than_get_and_post_are_malformed(half: Double, client: httpx.Client) -> None:
    response = client.put(f"{half.url}/v1/models/{HALF}", content=b"{}")
    assert response.json() == {"error": f"Malformed request: PUT /v1/models/{HALF}"}


def test_tf_runtime_errors_come_back_as_400(half: Double, client: httpx.Client) -> None:
    response = post(
        client,
        half,
        PREDICT,
        {"signature_name": "add_sub", "inputs": {"a": [1, 2], "b": [1, 2, 3]}},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("Incompatible shapes: [2] vs. [3]")


def image_body(images: np.ndarray, key: str = "inputs") -> bytes:
    return orjson.dumps({key: images}, option=orjson.OPT_SERIALIZE_NUMPY)


def test_image_predict_row_and_columnar(image: Double, client: httpx.Client) -> None:
    images = np.random.default_rng(1).integers(0, 256, (2, *double_models.IMAGE_SHAPE), np.uint8)
    expected = double_models.image_model_probabilities(images, seed=7)
    path = "/v1/models/mobilenet:predict"
    columnar = np.array(post(client, image, path, image_body(images)).json()["outputs"])
    rows = np.array(
        post(client, image, path, image_body(images, "instances")).json()["predictions"]
    )
    for result in (columnar, rows):
        assert result.shape == (2, double_models.NUM_CLASSES)
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.0", "JSON Value: 1.0 Type: Number is not of expected type: uint8"),
        ("2147483648", "JSON Value: 2147483648 Type: Number is not of expected type: uint8"),
        ("true", "JSON Value: true Type: True is not of expected type: uint8"),
        ('"7"', 'JSON Value: "7" Type: String is not of expected type: uint8'),
    ],
)
def test_uint8_input_needs_json_ints(
    image: Double, client: httpx.Client, value: str, message: str
) -> None:
    response = post(
        client, image, "/v1/models/mobilenet:predict", f'{{"inputs": [[[[{value}, 0, 0]]]]}}'
    )
    assert (response.status_code, response.json()) == (400, {"error": message})


def test_uint8_values_wrap_like_a_tensor_proto(image: Double, client: httpx.Client) -> None:
    zeros = np.zeros((1, *double_models.IMAGE_SHAPE), np.int64)
    path = "/v1/models/mobilenet:predict"
    assert (
        post(client, image, path, image_body(zeros + 256)).json()
        == post(client, image, path, image_body(zeros)).json()
    )


def test_wrong_image_shape_is_a_400_from_tf(image: Double, client: httpx.Client) -> None:
    response = post(client, image, "/v1/models/mobilenet:predict", '{"inputs": [[[[1, 2, 3]]]]}')
    assert response.status_code == 400
    assert "TensorSpec(shape=(1, 1, 1, 3)" in response.json()["error"]


def test_warmup_records_ran_before_available(image: Double) -> None:
    assert "Finished reading warmup data for model at" in image.log()


# Faults and stats (control port)


def test_fault_delay_slows_predict(
    half: Double, client: httpx.Client, control: httpx.Client
) -> None:
    assert control.put("/faults", json={"delay_ms": 300}).json() == {
        "delay_ms": 300,
        "error": None,
        "reset_connections": False,
    }
    started = time.monotonic()
    response = post(client, half, PREDICT, {"inputs": [1.0]})
    assert response.json() == {"outputs": [2.5]}
    assert time.monotonic() - started >= 0.3


def test_delay_past_rest_timeout_is_504(
    half: Double, client: httpx.Client, control: httpx.Client
) -> None:
    control.put("/faults", json={"delay_ms": 5000})
    started = time.monotonic()
    response = post(client, half, PREDICT, {"inputs": [1.0]})
    assert (response.status_code, response.json()) == (
        504,
        {"error": "Timed out waiting for notification"},
    )
    assert 0.9 <= time.monotonic() - started < 3


def test_fault_error_answers_that_status(
    half: Double, client: httpx.Client, control: httpx.Client
) -> None:
    control.put("/faults", json={"error": {"status": 503, "message": "overloaded"}})
    assert control.get("/faults").json()["error"] == {"status": 503, "message": "overloaded"}
    response = post(client, half, PREDICT, {"inputs": [1.0]})
    assert (response.status_code, response.json()) == (503, {"error": "overloaded"})
    assert client.get(f"{half.url}/v1/models/{HALF}").status_code == 200
    control.delete("/faults")
    assert post(client, half, PREDICT, {"inputs": [1.0]}).status_code == 200


def test_fault_reset_drops_the_connection(
    half: Double, client: httpx.Client, control: httpx.Client
) -> None:
    control.put("/faults", json={"reset_connections": True})
    with pytest.raises(httpx.TransportError):
        post(client, half, PREDICT, {"inputs": [1.0]})


def test_bad_fault_bodies_are_rejected(control: httpx.Client) -> None:
    for body in ({"delay": 1}, {"delay_ms": -1}, {"error": {"status": 42, "message": "x"}}, [1]):
        response = control.put("/faults", json=body)
        assert response.status_code == 400
        assert response.json()["error"].startswith("Invalid faults:")


def test_stats_count_predict_calls_and_examples(
    half: Double, client: httpx.Client, control: httpx.Client
) -> None:
    control.delete("/stats")
    post(client, half, PREDICT, {"instances": [1.0, 2.0, 3.0]})
    post(client, half, PREDICT, {"inputs": [[1.0], [2.0]]})
    post(client, half, PREDICT, "not json")
    client.get(f"{half.url}/v1/models/{HALF}")
    assert control.get("/stats").json() == {"predict_requests": 3, "predict_examples": 5}


# Versions, start-up and shutdown


def test_versions_reload_fail_and_roll_back(tmp_path: Path) -> None:
    base = tmp_path / "half"
    base.mkdir()
    port = free_port()
    double = Double(
        tmp_path / "versions.log",
        f"--model_name={HALF}",
        f"--model_base_path={base}",
        f"--rest_api_port={port}",
        "--max_num_load_retries=0",
    )
    try:
        wait_until(lambda: "No versions of servable" in double.log(), what="the no-version warning")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

        double_models.publish(str(base), 1, double_models.write_half_plus_two)
        double.wait_ready()
        with httpx.Client(base_url=double.url, timeout=30) as http:

            def states() -> dict[str, tuple[str, str]]:
                body = http.get(f"/v1/models/{HALF}").json()["model_version_status"]
                return {
                    entry["version"]: (entry["state"], entry["status"]["error_code"])
                    for entry in body
                }

            def offset() -> float:
                return http.post(f"/v1/models/{HALF}:predict", json={"inputs": [0.0]}).json()[
                    "outputs"
                ][0]

            double_models.publish(
                str(base), 2, lambda path: double_models.write_half_plus_two(path, 3.0)
            )
            wait_until(
                lambda: states() == {"2": ("AVAILABLE", "OK"), "1": ("END", "OK")},
                what="version 2 to replace version 1",
            )
            assert offset() == 3.0
            assert [
                e["version"] for e in http.get(f"/v1/models/{HALF}").json()["model_version_status"]
            ] == ["2", "1"]

            def broken(path: str) -> None:
                os.makedirs(path)
                Path(path, "saved_model.pb").write_bytes(b"not a protobuf")

            double_models.publish(str(base), 3, broken)
            wait_until(lambda: states().get("3", ("", ""))[0] == "END", what="version 3 to fail")
            failed = http.get(f"/v1/models/{HALF}/versions/3").json()["model_version_status"][0]
            assert failed["status"]["error_code"] == "DATA_LOSS"
            assert "saved_model.pb" in failed["status"]["error_message"]
            assert states()["2"] == ("AVAILABLE", "OK")
            assert offset() == 3.0

            def bad_warmup(path: str) -> None:
                double_models.write_half_plus_two(path, 4.0)
                double_models.write_warmup_requests(path, [{"wrong": np.zeros(1, np.float32)}])

            double_models.publish(str(base), 4, bad_warmup)
            wait_until(
                lambda: states().get("4", ("", ""))[0] == "END", what="version 4 warm-up to fail"
            )
            assert states()["4"][1] != "OK"
            assert offset() == 3.0

            for version in ("4", "3", "2"):
                shutil.rmtree(base / version)
            wait_until(
                lambda: states()["1"] == ("AVAILABLE", "OK") and states()["2"] == ("END", "OK"),
                what="rollback to version 1",
            )
            assert offset() == 2.0
    finally:
        assert double.stop() == 0
    assert "Stopped" in double.log()


def test_failed_initial_load_stops_the_server(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "saved_model.pb").write_bytes(b"junk")
    double = Double(
        tmp_path / "fail.log",
        "--model_name=m",
        f"--model_base_path={tmp_path}",
        "--max_num_load_retries=0",
    )
    assert double.exit_status(timeout=60) == 1
    assert "Failed to start server. Error:" in double.log()


def test_bad_flag_value_prints_usage_and_exits(tmp_path: Path) -> None:
    double = Double(tmp_path / "flags.log", "--rest_api_port=abc", "--model_base_path=/x")
    assert double.exit_status(timeout=30) == 255
    assert "Couldn't interpret value =abc for flag rest_api_port." in double.log()
