"""Entry point: `python -m tfserving_double --model_name=NAME --model_base_path=/abs/path ...`
or `python -m tfserving_double --model_config_file=/abs/models.config ...`.

Start-up follows TFS/model_servers/main.cc and server.cc: flags are parsed,
the config is built (model_config.py: from the file when one is given, and
then --model_name/--model_base_path are ignored; neither given: "Both
server_options.model_base_path and server_options.model_config_file are
empty!"), the models' versions are loaded, and only then are the ports opened
(ServerCore blocks in `ConnectAdaptersToManagerAndAwaitModelLoads` until every
model is AVAILABLE; with no version directory it waits for one; a refused
config or a failed initial load ends the process with "Failed to start
server."). With `--model_config_file_poll_wait_seconds` > 0 the file is then
re-read on that period (config_reload.py). Reference:
docs/tf-serving-protocol.md §9 (flags), §11 (start-up) and §14 (config file).

Then, as in server.cc `BuildAndStart`, the gRPC server starts on `--port`
(grpc_server.py), then REST on `--rest_api_port`; a REST port equal to the
gRPC port is skipped with TF Serving's log line. A gRPC port that cannot be
bound fails the start-up ("Failed to BuildAndStart gRPC server"). The
monitoring config is read next, only when REST is on, as server.cc does; a
file that cannot be read fails the start-up.

Differences: `--rest_api_port=0` (the binary's default, "REST off") picks a free
port here, printed in the ready line, because the tests need REST; `--port`
defaults to 0 and 0 keeps gRPC off (TF Serving: 8500; see flags.py). When
ready, one line goes to stdout, naming the ports that are open and every
model of the config with its AVAILABLE versions, in config order:
    tfserving_double: REST on 127.0.0.1:PORT serving NAME versions [N]
    tfserving_double: REST on 127.0.0.1:PORT and gRPC on 127.0.0.1:PORT serving NAME versions [N]
    tfserving_double: REST on 127.0.0.1:PORT serving A versions [1, 2], B versions [3]
(the REST port is followed by a space, so parsers that read the first word
after "REST on 127.0.0.1:" keep working; "serving no models" for an empty
config). With `--listen_host=ADDRESS` (the double's own flag, flags.py) every
port binds that address and the line names it instead of 127.0.0.1. Logs go
to stderr. SIGTERM or SIGINT stops the process with exit status 0; gRPC calls
in flight get a second to end.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from .flags import Flags, channel_arguments, parse_flags

log = logging.getLogger("tfserving_double")

USAGE = (
    "usage: python -m tfserving_double (--model_name=NAME --model_base_path=/abs/path | "
    "--model_config_file=/abs/models.config [--model_config_file_poll_wait_seconds=0]) "
    "[--rest_api_port=8501] [--port=8500] [--rest_api_timeout_in_ms=30000] "
    "[--file_system_poll_wait_seconds=1] [--monitoring_config_file=PATH] "
    "[--grpc_channel_arguments=key=value,...] [--control_port=0] [--listen_host=127.0.0.1] "
    "(TF Serving's flag names, but for the last two)"
)


def main(argv: list[str]) -> int:
    """Run the double until SIGTERM/SIGINT; return the process exit status."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname).1s tfserving_double] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    parsed = parse_flags(argv)
    if parsed.errors:
        for error in parsed.errors:
            log.error(error)
        print(USAGE, file=sys.stderr)
        return 255
    if parsed.unknown:
        log.warning("unknown argument: %s", parsed.unknown[0])
    flags = parsed.flags
    problem = _check_flags(flags)
    if problem is not None:
        log.error(problem)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if flags.version:
        import tensorflow as tf

        print(f"TensorFlow ModelServer: tfserving_double\nTensorFlow Library: {tf.__version__}")
        return 0
    return _serve(flags)


def _check_flags(flags: Flags) -> str | None:
    if flags.batching_parameters_file and not flags.enable_batching:
        return "batching_parameters_file is set without setting enable_batching to true"
    try:
        channel_arguments(flags.grpc_channel_arguments)
        ipaddress.IPv4Address(flags.listen_host)
    except ipaddress.AddressValueError as exc:
        return f"--listen_host must be an IPv4 address: {exc}"
    except ValueError as exc:
        return f"Failed to start server. Error: INVALID_ARGUMENT: {exc}"
    if not flags.model_base_path and not flags.model_config_file and not flags.version:
        return (
            "Failed to start server. Error: INVALID_ARGUMENT: Both "
            "server_options.model_base_path and server_options.model_config_file are empty!"
        )
    if flags.enable_batching:
        log.warning("--enable_batching: the double does not batch; each request runs on its own")
    return None


def _serve(flags: Flags) -> int:
    # Imported here so TF_CPP_MIN_LOG_LEVEL is set before TensorFlow loads.
    from .config_reload import ConfigFilePoller
    from .errors import ServingError
    from .faults import ControlApi, FaultControl
    from .grpc_server import GrpcServer
    from .grpc_service import GrpcApi
    from .httpd import HttpServer
    from .model_config import ModelSpec, read_config_file, single_model_config
    from .monitoring import Metrics
    from .monitoring_config import prometheus_path
    from .registry import ModelRegistry
    from .rest import RestApi
    from .servable import Servable, load_servable
    from .server_core import ServerCore
    from .warmup import run_warmup

    tags = [tag for tag in flags.saved_model_tags.split(",") if tag]

    def load(version: int, path: str) -> Servable:
        servable = load_servable(version, path, tags)
        if flags.enable_model_warmup:
            ran = run_warmup(servable, path)
            if ran:
                log.info("Finished reading warmup data for model at %s: %d records", path, ran)
        # Parsing one image allocates ~50k lists, which triggers Python's cyclic GC many
        # times per request; each full pass over TensorFlow's objects costs ~100 ms.
        # Freezing what is loaded and raising the threshold removes that cost.
        gc.freeze()
        return servable

    gc.set_threshold(100_000, 50, 100)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("Received signal %d, shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def make_registry(spec: ModelSpec) -> ModelRegistry:
        return ModelRegistry(
            spec.name,
            spec.base_path,
            spec.policy,
            load,
            flags.file_system_poll_wait_seconds,
            flags.max_num_load_retries,
            flags.load_retry_interval_micros / 1e6,
        )

    core = ServerCore(make_registry, flags.allow_version_labels_for_unavailable_models, stop)
    try:
        if flags.model_config_file:
            config = read_config_file(flags.model_config_file)
        else:
            config = single_model_config(flags.model_name, flags.model_base_path)
        core.reload_config(config)
    except ServingError as exc:
        log.error("Failed to start server. Error: %s", exc.status_string())
        core.stop()
        return 1
    if stop.is_set():
        core.stop()
        return 0
    poller = None
    if flags.model_config_file and flags.model_config_file_poll_wait_seconds > 0:
        poller = ConfigFilePoller(
            core, flags.model_config_file, flags.model_config_file_poll_wait_seconds, stop
        )
        poller.start()

    control = FaultControl()
    metrics = Metrics()
    grpc_server = None
    host = flags.listen_host
    if flags.port:
        grpc_api = GrpcApi(core, control, flags.enable_serialization_as_tensor_content, metrics)
        try:
            grpc_server = GrpcServer(
                host,
                flags.port,
                grpc_api,
                max(1, flags.grpc_max_threads),
                channel_arguments(flags.grpc_channel_arguments),
            )
        except RuntimeError as exc:
            log.error("%s", exc)
            log.error(
                "Failed to start server. Error: INVALID_ARGUMENT: Failed to BuildAndStart "
                "gRPC server"
            )
            core.stop()
            return 1
        grpc_server.start()
        log.info("Running gRPC ModelServer at %s:%d ...", host, grpc_server.port)
    listening = []
    servers = []
    executor = ThreadPoolExecutor(max(1, flags.rest_api_num_threads), thread_name_prefix="predict")
    if grpc_server is not None and flags.rest_api_port == flags.port:
        log.error(
            "server_options.http_port cannot be same as grpc_port. Please use a different "
            "port for HTTP/REST API. Skipped exporting HTTP/REST API."
        )
    else:
        try:
            metrics_path = (
                prometheus_path(flags.monitoring_config_file)
                if flags.monitoring_config_file
                else None
            )
        except ServingError as exc:
            log.error("Failed to start server. Error: %s", exc.status_string())
            if grpc_server is not None:
                grpc_server.stop()
            core.stop()
            return 1
        api = RestApi(
            core,
            control,
            executor,
            flags.rest_api_timeout_in_ms,
            metrics,
            metrics_path,
            cors=flags.rest_api_enable_cors_support,
        )
        servers.append(HttpServer(host, flags.rest_api_port, api, "rest"))
        listening.append(f"REST on {host}:{servers[0].port}")
        if metrics_path is not None:
            log.info("Exporting Prometheus metrics at %s", metrics_path)
    if grpc_server is not None:
        listening.append(f"gRPC on {host}:{grpc_server.port}")
    if flags.control_port:
        servers.append(HttpServer(host, flags.control_port, ControlApi(control), "control"))
        log.info("Fault control on %s:%d", host, servers[-1].port)
    for server in servers:
        server.start()
    models = ", ".join(f"{name} versions {versions}" for name, versions in core.serving())
    ready = f"tfserving_double: {' and '.join(listening)} serving {models or 'no models'}"
    print(ready, flush=True)
    while not stop.wait(0.5):
        pass
    if poller is not None:
        poller.join()
    if grpc_server is not None:
        grpc_server.stop()
    for server in servers:
        server.stop()
    core.stop()
    executor.shutdown(wait=False, cancel_futures=True)
    log.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
