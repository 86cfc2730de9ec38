"""The gRPC server: TF Serving's two services on `--port`, errors as gRPC statuses.

Follows TFS/model_servers/server.cc (`BuildAndStart`: both services on one
port, `SetMaxMessageSize(kint32max)`) and grpc_status_util.cc `ToGRPCStatus`
(a TF status becomes the gRPC status with the same code and message; messages
over 1024 characters are cut and end in "...TRUNCATED"). The servicers are the
official generated ones from tensorflow_serving.apis, so method paths are
`/tensorflow.serving.PredictionService/Predict` etc. Reference:
docs/tf-serving-protocol.md §6 and §8 (size limits).

`--grpc_channel_arguments` pairs (flags.py `channel_arguments`) are passed to
the server after the double's own options, as `BuildAndStart` adds them after
`SetMaxMessageSize`; unknown keys are gRPC's to ignore. So
`grpc.max_connection_age_ms=30000` makes the server send GOAWAY on every
connection older than 30 s (give or take gRPC's jitter), and clients reconnect.

Differences: the double listens on `--listen_host`, 127.0.0.1 unless given
(TF Serving on 0.0.0.0; flags.py), and turns SO_REUSEPORT off, so a port
already in use fails the start-up instead of being shared. Classify, Regress
and MultiInference answer UNIMPLEMENTED (the generated servicers' default);
there is no grpc.health.v1 service and no SSL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from .errors import ServingError
from .flags import ChannelArgument
from .grpc_service import GrpcApi

MAX_MESSAGE_BYTES = 2**31 - 1
MESSAGE_LIMIT = 1024

log = logging.getLogger("tfserving_double")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _call(
    handler: Callable[[Req, grpc.ServicerContext], Resp],
    request: Req,
    context: grpc.ServicerContext,
) -> Resp:
    """Run one handler; a ServingError ends the call with its code and message (ToGRPCStatus)."""
    try:
        return handler(request, context)
    except ServingError as exc:
        message = exc.message
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT] + "...TRUNCATED"
        context.abort(grpc.StatusCode[exc.code], message)
    except Exception as exc:
        log.exception("Unexpected failure answering a gRPC call")
        context.abort(grpc.StatusCode.INTERNAL, f"Internal error in the TF Serving double: {exc}")
    # abort raises, but grpc ships no type information to tell mypy so.
    raise AssertionError("grpc.ServicerContext.abort returned")


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, api: GrpcApi) -> None:
        self._api = api

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return _call(self._api.predict, request, context)

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return _call(self._api.get_model_metadata, request, context)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, api: GrpcApi) -> None:
        self._api = api

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return _call(self._api.get_model_status, request, context)

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        return _call(self._api.handle_reload_config_request, request, context)


class GrpcServer:
    """A running gRPC server on host:port (TF Serving's `--port`, the double's `--listen_host`)."""

    def __init__(
        self,
        host: str,
        port: int,
        api: GrpcApi,
        max_threads: int,
        channel_arguments: list[ChannelArgument],
    ) -> None:
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="grpc")
        self._server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                *channel_arguments,
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(api), self._server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(api), self._server)
        # Raises RuntimeError when the port cannot be bound.
        self.port: int = self._server.add_insecure_port(f"{host}:{port}")

    def start(self) -> None:
        """Start serving on the executor's threads."""
        self._server.start()

    def stop(self, grace_seconds: float = 1.0) -> None:
        """Refuse new calls, give running ones `grace_seconds`, then cancel them."""
        self._server.stop(grace_seconds).wait()
        self._executor.shutdown(wait=False, cancel_futures=True)
