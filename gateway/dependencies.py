"""What handlers take from the app's state: settings, backend, fleet, traffic, golden checks.

The lifespan (gateway/app.py) puts each long-lived object on `app.state`; these
aliases hand them to handlers, so no handler reaches into `request.app` itself.
"""

from typing import Annotated

from fastapi import Depends, Request

from gateway.backend import Backend
from gateway.fleet import Fleet
from gateway.golden_check import GoldenChecker
from gateway.settings import Settings
from gateway.traffic import Traffic

# The dependencies are `async def` on purpose: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per dependency per request.


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def _fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


async def _traffic(request: Request) -> Traffic:
    traffic: Traffic = request.app.state.traffic
    return traffic


async def _golden(request: Request) -> GoldenChecker:
    golden: GoldenChecker = request.app.state.golden
    return golden


SettingsDep = Annotated[Settings, Depends(_settings)]
GoldenDep = Annotated[GoldenChecker, Depends(_golden)]
TrafficDep = Annotated[Traffic, Depends(_traffic)]
FleetDep = Annotated[Fleet, Depends(_fleet)]
BackendDep = Annotated[Backend, Depends(_backend)]
