"""Where the app is assembled: settings, backend, thread pool, middleware and routes.

Start it with `python -m gateway` or `uvicorn --factory gateway.app:create_app`.
Nothing here runs at import: the factory reads the environment and the
lifespan applies the imaging libraries' process-wide settings, then opens
(and closes) every long-lived resource.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway import __version__, metrics, paths
from gateway.accounting import PredictAccounting
from gateway.admission import ApiKeyAuth, InFlightLimit
from gateway.backend import Backend
from gateway.batching import Batcher
from gateway.library_settings import apply_library_settings
from gateway.limits import UploadGuard
from gateway.pipeline import Classifier
from gateway.problems import install_problem_handlers
from gateway.routes import router
from gateway.settings import Settings

logger = logging.getLogger(__name__)


def build_backend(settings: Settings) -> Backend:
    """The backend INFERENCE_BACKEND names."""
    if settings.inference_backend == "embedded":
        from gateway.embedded import EmbeddedBackend  # only loaded when chosen

        return EmbeddedBackend(settings)
    from gateway.tfserving import TFServingBackend

    return TFServingBackend(settings)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the gateway; tests pass their own settings or backend."""
    settings = settings or Settings()
    backend = backend or build_backend(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        apply_library_settings()
        executor = ThreadPoolExecutor(
            max_workers=settings.preprocess_threads, thread_name_prefix="preprocess"
        )
        await backend.start()
        batcher = Batcher(
            backend,
            max_size=settings.batch_max_size,
            timeout_s=settings.batch_timeout_ms / 1000.0,
            concurrency=settings.batch_concurrency,
        )
        batcher.start()
        app.state.settings = settings
        app.state.backend = backend
        app.state.classifier = Classifier(settings, backend, batcher, executor)
        gauge = asyncio.create_task(_refresh_readiness(backend, settings.status_poll_seconds))
        logger.info("gateway %s serving with the %s backend", __version__, backend.name)
        try:
            yield
        finally:
            gauge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauge
            await batcher.close()
            await backend.close()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="ml-inference-pipeline gateway",
        version=__version__,
        description="Image classification in front of TensorFlow Serving (or in-process).",
        docs_url=paths.DOCS,
        lifespan=lifespan,
    )
    install_problem_handlers(app, settings.max_upload_bytes)
    app.include_router(router)
    # Each add_middleware wraps the previous ones, so the last added runs first:
    # accounting -> CORS -> API keys -> in-flight cap -> upload guard -> routes.
    app.add_middleware(
        UploadGuard,
        max_upload_bytes=settings.max_upload_bytes,
        timeout_seconds=settings.request_timeout_seconds,
        min_bytes_per_second=settings.min_upload_bytes_per_second,
        grace_seconds=settings.upload_grace_seconds,
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
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-Timeout"],
        )
    app.add_middleware(PredictAccounting)
    return app


async def _refresh_readiness(backend: Backend, every_seconds: float) -> None:
    """Keep gateway_model_ready fresh between probes, as /health sets it: from status().

    A scrape never waits on the model server, so the gauge is set here, in the
    background; status() only reports, and each backend's own watcher (started
    by backend.start()) is what follows new versions.
    """
    while True:
        try:
            status = await backend.status()
            metrics.record_model_ready(status.ready)
        except Exception:
            logger.exception("model status check failed")
        await asyncio.sleep(every_seconds)
