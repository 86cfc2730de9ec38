"""Where the app is assembled: settings, backend, thread pool, middleware and routes.

Start it with `python -m gateway` or `uvicorn --factory gateway.app:create_app`
(without the graceful drain on SIGTERM: `python -m gateway` has it).
Nothing here runs at import: the factory reads the environment and the
lifespan applies the imaging libraries' process-wide settings, then opens
(and closes) every long-lived resource.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway import __version__, metrics, paths
from gateway.accounting import PredictAccounting
from gateway.admin_routes import router as admin_router
from gateway.admission import ApiKeyAuth, InFlightLimit
from gateway.backend import Backend
from gateway.batch_route import router as batch_router
from gateway.decode_budget import MIB, DecodeBudget
from gateway.fleet import Fleet
from gateway.golden_check import GoldenChecker, golden_results
from gateway.lanes import LaneBackendFactory, build_lane_backend
from gateway.library_settings import apply_library_settings
from gateway.limits import UploadGuard
from gateway.logs import configure_logging
from gateway.model_config import ModelConfigFile
from gateway.observability import install_observability
from gateway.predict_route import router as predict_router
from gateway.problems import install_problem_handlers
from gateway.routes import router
from gateway.security_headers import SecurityHeaders
from gateway.settings import Settings
from gateway.traffic import Traffic
from gateway.ui_route import router as ui_router

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    backend: Backend | None = None,
    lane_backend: LaneBackendFactory = build_lane_backend,
    span_processor: "SpanProcessor | None" = None,
) -> FastAPI:
    """Build the gateway; tests pass their own settings, backends or span processor."""
    settings = settings or Settings()
    configure_logging(settings)
    # Read now, so a config file that does not parse stops the start with its reason.
    config_file = (
        ModelConfigFile(settings.model_config_file, settings.model_base_path)
        if settings.model_config_file is not None
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        apply_library_settings()
        executor = ThreadPoolExecutor(
            max_workers=settings.preprocess_threads, thread_name_prefix="preprocess"
        )
        budget = DecodeBudget(settings.decode_memory_budget_mb * MIB)
        # Read at scrape time: set from several decoding threads, a gauge could keep a
        # stale value written last by a thread that read the count earlier.
        metrics.DECODE_MEMORY_RESERVED.set_function(lambda: budget.in_use)
        fleet = Fleet(settings, executor, budget, config_file, lane_backend, backend)
        await fleet.start()
        app.state.settings = settings
        app.state.backend = fleet.default_lane.backend
        app.state.fleet = fleet
        app.state.traffic = traffic = Traffic(settings)
        app.state.golden = golden = GoldenChecker(settings)
        gauge = asyncio.create_task(
            _refresh_readiness(app.state.backend, fleet, golden, settings.status_poll_seconds)
        )
        logger.info("gateway %s serving with the %s backend", __version__, app.state.backend.name)
        try:
            yield
        finally:
            gauge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauge
            await golden.close()
            await traffic.close()
            await fleet.close()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="ml-inference-pipeline gateway",
        version=__version__,
        description="Image classification in front of TensorFlow Serving (or in-process).",
        docs_url=paths.DOCS,
        swagger_ui_oauth2_redirect_url=paths.DOCS_OAUTH2_REDIRECT,
        redoc_url=paths.REDOC,
        lifespan=lifespan,
    )
    install_problem_handlers(app, settings.max_upload_bytes)
    app.include_router(router)
    app.include_router(predict_router)
    app.include_router(batch_router)
    app.include_router(admin_router)
    app.include_router(ui_router)
    # Each add_middleware wraps the previous ones, so the last added runs first:
    # request id -> access log -> (trace span) -> security headers -> accounting -> CORS ->
    # API keys -> in-flight cap -> upload guard -> routes.
    app.add_middleware(
        UploadGuard,
        max_upload_bytes=settings.max_upload_bytes,
        timeout_seconds=settings.request_timeout_seconds,
        min_bytes_per_second=settings.min_upload_bytes_per_second,
        grace_seconds=settings.upload_grace_seconds,
        max_batch_bytes=settings.batch_bytes_limit(),
    )
    app.add_middleware(InFlightLimit, limit=settings.max_in_flight)
    keys = settings.accepted_api_keys()
    if keys:
        app.add_middleware(ApiKeyAuth, keys=keys)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Content-Type",
                "X-API-Key",
                "Authorization",
                "X-Request-Timeout",
                "X-Request-ID",
            ],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(PredictAccounting)
    # Outside everything that can answer (401, 413, 503, routes), so every answer has them.
    app.add_middleware(SecurityHeaders)
    # Outermost: every answer carries its request id, and every request has its line.
    install_observability(app, settings, span_processor)
    return app


async def _refresh_readiness(
    backend: Backend, fleet: Fleet, golden: GoldenChecker, every_seconds: float
) -> None:
    """Keep gateway_model_ready and the golden checks fresh between probes, as /health does.

    A scrape never waits on a model server, so the gauges are set here, in the
    background; status() only reports, and each backend's own watcher (started
    by backend.start()) is what follows new versions.
    """
    while True:
        try:
            status = await backend.status()
            checks = await golden_results(golden, fleet)
            passed = all(check.passed is not False for check in checks)
            metrics.record_model_ready(status.ready and passed)
        except Exception:
            logger.exception("model status check failed")
        await asyncio.sleep(every_seconds)
