"""The gateway's own OpenAPI document, turned against it with schemathesis, in-process.

Each operation in `/openapi.json` gets generated requests (valid and invalid
ones, and undeclared methods); every answer must be what the README's Errors
table or the document promises. The fake backend is healthy throughout, so no
5xx is ever expected. test/e2e/test_schema.py checks that a real gateway serves
this same document.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.transport import Response
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi import checks

from api_client import in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.app import create_app
from test_readme_errors import readme_error_table

PROBLEM = "application/problem+json"
# 40 examples per operation; /predict is the only operation with inputs, and its
# file field is random bytes.
CASES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
IMAGE_ERRORS = {"empty_file", "not_an_image", "unsupported_format", "corrupt_image"}

# The operations the document must list; the first test keeps this in step with it.
OPERATIONS = [
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/metrics/prometheus"),
    ("GET", "/model"),
    ("GET", "/models"),
    ("GET", "/admin/routing"),
    ("PUT", "/admin/routing"),
    ("POST", "/predict"),
    ("POST", "/predict/batch"),
]
WITH_INPUTS = [("POST", "/predict"), ("POST", "/predict/batch")]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_files(tmp_path_factory.mktemp("models"))


def build_app(model_files: Path) -> FastAPI:
    """The gateway with default settings and a healthy fake model."""
    backend = FakeBackend()
    return create_app(fake_settings(model_files), backend, backend.open_lane)


@pytest.fixture(scope="module")
def api_schema(model_files: Path) -> Iterator[BaseSchema]:
    """The OpenAPI document the app serves; schemathesis calls the app in-process.

    schemathesis runs the app's lifespan itself on the first call, and keeps it
    running until told to stop.
    """
    yield schemathesis.openapi.from_asgi("/openapi.json", build_app(model_files))
    shutdown_lifespans()


@pytest.fixture(scope="module")
async def client(model_files: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(fake_settings(model_files), FakeBackend()) as client:
        yield client


def for_each_case(
    api_schema: BaseSchema,
    method: str,
    path: str,
    mode: GenerationMode,
    check: Callable[[schemathesis.Case], None],
) -> None:
    """Run `check` on generated requests for one operation.

    schemathesis' own pytest loader (`from_fixture`) breaks under pytest 9
    (it sets `node._nodeid`), so the operation's strategy is driven here.
    """

    @CASES
    @given(api_schema[path][method].as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        check(case)

    run()


def content_type(response: Response | httpx.Response) -> str:
    value = response.headers.get("content-type", "")
    # schemathesis keeps every header as a list of values; httpx joins them.
    return value[0] if isinstance(value, list) else value


def assert_documented_problem(response: Response | httpx.Response) -> None:
    """A failure leaves as a problem document whose code and status the README lists."""
    body = response.json()
    assert content_type(response) == PROBLEM, response.headers
    assert body["status"] == response.status_code
    assert body["success"] is False
    assert body["detail"]
    assert response.status_code in readme_error_table().get(body["code"], set()), body
    assert "Traceback" not in response.text


def test_the_document_lists_exactly_the_operations_tested(api_schema: BaseSchema) -> None:
    listed = {
        (operation.ok().method.upper(), operation.ok().path)
        for operation in api_schema.get_all_operations()
    }
    assert listed == set(OPERATIONS)


def answer_is_a_success_or_a_documented_problem(case: schemathesis.Case) -> None:
    response = case.call(timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text)
    if response.status_code >= 400:
        assert_documented_problem(response)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_requests_get_a_success_or_a_documented_problem(
    api_schema: BaseSchema, method: str, path: str
) -> None:
    for_each_case(
        api_schema,
        method,
        path,
        GenerationMode.POSITIVE,
        answer_is_a_success_or_a_documented_problem,
    )


@pytest.mark.parametrize(("method", "path"), WITH_INPUTS)
def test_invalid_requests_get_a_documented_problem(
    api_schema: BaseSchema, method: str, path: str
) -> None:
    for_each_case(
        api_schema,
        method,
        path,
        GenerationMode.NEGATIVE,
        answer_is_a_success_or_a_documented_problem,
    )


def conforms_to_the_document(case: schemathesis.Case) -> None:
    case.call_and_validate(
        timeout=30,
        checks=[
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ],
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_requests_are_answered_as_the_document_says(
    api_schema: BaseSchema, method: str, path: str
) -> None:
    for_each_case(api_schema, method, path, GenerationMode.POSITIVE, conforms_to_the_document)


@pytest.mark.parametrize(("method", "path"), WITH_INPUTS)
def test_invalid_requests_are_answered_as_the_document_says(
    api_schema: BaseSchema, method: str, path: str
) -> None:
    for_each_case(api_schema, method, path, GenerationMode.NEGATIVE, conforms_to_the_document)


UNDECLARED_PROBES = ("GET", "POST", "PUT", "PATCH", "DELETE", "TRACE")


@pytest.mark.anyio
@pytest.mark.parametrize("path", sorted({path for _, path in OPERATIONS}))
async def test_undeclared_methods_get_405_with_an_allow_header(
    client: httpx.AsyncClient, path: str
) -> None:
    declared = {method for method, declared_path in OPERATIONS if declared_path == path}
    for method in sorted(set(UNDECLARED_PROBES) - declared):
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert_documented_problem(response)
        # RFC 9110 section 15.5.6: a 405 MUST carry Allow, listing the methods the target supports.
        allowed = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
        assert declared <= allowed, (method, path, response.headers)


MAGIC_NUMBERS = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]


@pytest.mark.anyio
@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MAGIC_NUMBERS), st.binary(max_size=2048), st.text(max_size=40))
async def test_random_bytes_uploaded_as_a_file_get_a_documented_4xx(
    client: httpx.AsyncClient, magic: bytes, rest: bytes, filename: str
) -> None:
    response = await client.post(
        "/predict", files={"file": (filename or "upload", magic + rest, "image/jpeg")}
    )
    assert 400 <= response.status_code < 500, response.text
    assert_documented_problem(response)
    assert response.json()["code"] in IMAGE_ERRORS


@pytest.mark.anyio
async def test_the_document_says_an_empty_file_is_refused(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    content = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["minLength"] == 1
    # The raw body (gateway/raw_upload.py) is documented beside the form.
    for raw in ("image/*", "application/octet-stream"):
        assert content[raw]["schema"] == {"type": "string", "format": "binary", "minLength": 1}
