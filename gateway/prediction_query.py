"""The query both prediction endpoints take: how many classes, and which model version answers.

`POST /predict` and `POST /predict/batch` read the same parameters with the same
bounds, declared once here as a FastAPI dependency, so the API document and the
validation of the two cannot drift apart; `plan` is what both do with them
before reading the body.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query
from starlette.requests import Request

from gateway.deadlines import request_timeout
from gateway.errors import InvalidRequest
from gateway.fleet import Fleet
from gateway.settings import Settings
from gateway.target import Target
from gateway.traffic import Routed, Traffic

MAX_TOP_K = 1001
INT64_MAX = 2**63 - 1
# Model names and version labels a request may give: what a folder name or a
# TF Serving label can safely be, and nothing that needs escaping in a URL.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


@dataclass(frozen=True)
class PredictionQuery:
    """`?top_k=`, `?model=`, and `?version=` or `?label=` (not both)."""

    top_k: int | None = None
    model: str | None = None
    version: int | None = None
    label: str | None = None

    def plan(
        self, request: Request, settings: Settings, fleet: Fleet, traffic: Traffic
    ) -> "Planned":
        """Where the request goes, its deadline and top-k, all checked before the upload
        is read, so a bad query or X-Request-Timeout costs no body."""
        routed = traffic.route(
            self.target(settings.model_name), request.headers, fleet.models, fleet.pinned_model
        )
        timeout = request_timeout(request.headers, settings.request_timeout_seconds)
        return Planned(routed, timeout, self.top_k or settings.default_top_k)

    def target(self, default_model: str) -> Target:
        """What the request named, the default model filling in for a missing `?model=`."""
        if self.version is not None and self.label is not None:
            raise InvalidRequest("Give ?version= or ?label=, not both.")
        return Target(self.model or default_model, self.version, self.label)


async def prediction_query(
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K)] = None,
    model: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="default: MODEL_NAME")
    ] = None,
    version: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    label: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="a version label: stable, canary")
    ] = None,
) -> PredictionQuery:
    """The query as a dependency. A coroutine on purpose: FastAPI runs a plain function or
    a class dependency on a worker thread, a thread hop and two wake-ups per request
    (2 % of the embedded gateway's samples under load in `make profile`)."""
    return PredictionQuery(top_k, model, version, label)


PredictionQueryDep = Annotated[PredictionQuery, Depends(prediction_query)]


@dataclass(frozen=True)
class Planned:
    """A prediction request's target, deadline (seconds) and number of classes."""

    routed: Routed
    timeout: float
    top_k: int
