"""The admin endpoints: read and replace the canary split and shadow routing at run time.

They exist only behind API keys: with API_KEYS unset anyone who reaches the port
could send every user to a candidate version, so they answer 403 then. The new
routing is read as strictly as the file (1 MiB at most, duplicate keys refused),
validated whole, and refused when it names a model not served (422 naming each
problem); then written to ROUTING_FILE atomically when there is one, so a
restart keeps it.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway import paths
from gateway.dependencies import FleetDep
from gateway.errors import AdminDisabled, InvalidRequest, RoutingNotSaved
from gateway.problems import documented
from gateway.responses import json_response
from gateway.routing_file import MAX_FILE_BYTES, RoutingFileError
from gateway.settings import Settings
from gateway.traffic import Traffic
from gateway.traffic_split import RoutingError, parse_routing

router = APIRouter()


async def _admin_traffic(request: Request) -> Traffic:
    settings: Settings = request.app.state.settings
    if not settings.accepted_api_keys():
        raise AdminDisabled("Set API_KEYS (or API_KEYS_FILE) to use the admin endpoints.")
    traffic: Traffic = request.app.state.traffic
    return traffic


AdminTraffic = Annotated[Traffic, Depends(_admin_traffic)]


def _routing_body(traffic: Traffic) -> dict[str, Any]:
    body: dict[str, Any] = {"routing": traffic.routing.current().model_dump(exclude_none=True)}
    if traffic.routing.path is not None:
        body["routing_file"] = traffic.routing.path.name
    if traffic.routing.error:
        body["routing_file_error"] = traffic.routing.error
    return body


@router.get(
    paths.ADMIN_ROUTING,
    summary="The canary split and shadow routing in force",
    responses=documented(401, 403),
)
async def get_routing(traffic: AdminTraffic) -> Response:
    return json_response(_routing_body(traffic))


@router.put(
    paths.ADMIN_ROUTING,
    summary="Replace the canary split and shadow routing (docs/rollouts.md)",
    responses=documented(401, 403, 422, 500),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def put_routing(request: Request, traffic: AdminTraffic, fleet: FleetDep) -> Response:
    # Read as the routing file is read: the same size cap and the same strict parser
    # (duplicate keys refused), so whatever is accepted here is read back after a restart.
    document = await _bounded_body(request)
    try:
        config = await run_in_threadpool(parse_routing, document)  # validation is CPU work
    except RoutingError as exc:
        raise InvalidRequest(f"The routing was not changed: {exc}") from None
    unknown = sorted(set(config.models) - set(fleet.models.names()))
    if unknown:
        raise InvalidRequest(
            f"The routing was not changed: it names models not served here: "
            f"{', '.join(repr(name) for name in unknown[:5])}; served: "
            f"{', '.join(fleet.models.names())}."
        )
    try:
        await run_in_threadpool(traffic.routing.replace, config)  # it writes and fsyncs
    except RoutingFileError as exc:
        raise RoutingNotSaved(f"The routing was not changed: {exc}") from None
    return json_response(_routing_body(traffic))


async def _bounded_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FILE_BYTES:
            raise InvalidRequest(
                f"The routing was not changed: it is larger than {MAX_FILE_BYTES} bytes."
            )
    return bytes(body)
