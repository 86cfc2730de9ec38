"""The gRPC API's handlers: Predict, GetModelMetadata, GetModelStatus, HandleReloadConfigRequest.

Follows TFS/model_servers/prediction_service_impl.cc, model_service_impl.cc,
get_model_status_impl.cc and TFS/servables/tensorflow/get_model_metadata_impl.cc;
the predict checks themselves are in grpc_predict.py, the gRPC server in
grpc_server.py. Reference: docs/tf-serving-protocol.md §6.

- Predict takes the same servable as REST: the latest AVAILABLE version unless
  the ModelSpec names a version or a version_label of the config
  (server_core.py). The response's model_spec carries the request's name, the
  resolved signature name and the version that ran (predict_util.cc `MakeModelSpec`).
- Outputs use the typed fields (`float_val`, ...) unless
  `--enable_serialization_as_tensor_content=true`, then `tensor_content`.
- The client's deadline bounds the run like `DeadlineToTimeoutMillis` feeding
  RunOptions.timeout_in_ms: an injected delay stops at the deadline with
  DEADLINE_EXCEEDED. A model run already started is not interrupted (TF's
  Session would cancel it); the client sees DEADLINE_EXCEEDED either way.
- Faults and counters are shared with REST (faults.py).
- GetModelMetadata answers `signature_def` only, a SignatureDefMap packed in an
  Any; model_spec has the name and version, no signature_name.
- GetModelStatus gives the REST status data; a version_label is ignored, as
  GetModelStatusImpl only looks at `version`.
- An unknown metadata_field gives "Metadata field NAME is not supported", the
  text of the request check in get_model_metadata_impl.cc (2.20.0 and later).
- Predict is counted and timed for the Prometheus page (monitoring.py) as
  prediction_service_impl.cc does; metadata and status calls are not.
- HandleReloadConfigRequest (model_service_impl.cc): a config other than a
  model_config_list is INVALID_ARGUMENT "ServerModelConfig type not supported
  by HandleReloadConfigRequest. Only ModelConfigList is currently supported";
  otherwise ServerCore::ReloadConfig runs (server_core.py) and blocks until new
  models are loaded. Its status is the call's gRPC status (a failure ends the
  call with it, so no response body arrives), and on success the response's
  `status` is OK and `metric` holds the increase of each named counter.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
)

from . import grpc_predict
from .errors import CODE_NAMES, ServingError, invalid_argument
from .faults import FaultControl
from .json_request import batch_size
from .monitoring import Metrics
from .rest import DEADLINE_MESSAGE
from .server_core import ServerCore

_CODE_NUMBERS = {name: number for number, name in CODE_NAMES.items()}
_State = get_model_status_pb2.ModelVersionStatus.State

log = logging.getLogger("tfserving_double")


class GrpcApi:
    """The handlers behind both services."""

    def __init__(
        self, core: ServerCore, control: FaultControl, as_content: bool, metrics: Metrics
    ) -> None:
        self._core = core
        self._control = control
        self._as_content = as_content
        self._metrics = metrics

    def predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        """PredictionService/Predict (prediction_service_impl.cc, predict_util.cc `RunPredict`)."""
        start = time.perf_counter()
        code = "OK"
        try:
            return self._predict(request, context)
        except ServingError as exc:
            code = exc.code
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            micros = int((time.perf_counter() - start) * 1e6)
            name = request.model_spec.name
            self._metrics.record_request(name, "Predict", "GRPC", code, micros)

    def _predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        self._control.count_request()
        faults = self._control.current()
        if faults.reset_connections:
            raise ServingError("UNAVAILABLE", "Connection reset by peer")
        if faults.error_status is not None:
            raise ServingError(faults.error_code, faults.error_message)
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        servable = grpc_predict.find_servable(self._core, request.model_spec)
        name, signature = grpc_predict.find_signature(servable, request.model_spec.signature_name)
        tensors = grpc_predict.read_inputs(signature, request)
        aliases = grpc_predict.select_outputs(signature, request.output_filter)
        self._control.count_examples(batch_size(tensors) if tensors else 0)
        _wait(faults.delay_ms / 1000, context)
        grpc_predict.check_dtypes(signature, tensors)
        with self._metrics.runtime(request.model_spec.name):
            outputs = servable.run(name, tensors)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = name
        response.model_spec.version.value = servable.version
        grpc_predict.write_response(response, outputs, aliases, self._as_content)
        return response

    def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, _context: object
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """PredictionService/GetModelMetadata (get_model_metadata_impl.cc)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = grpc_predict.find_servable(self._core, request.model_spec)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_def_json.items():
            json_format.ParseDict(signature, signatures.signature_def[key])
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signatures)
        return response

    def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest, _context: object
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """ModelService/GetModelStatus (get_model_status_impl.cc): same data as REST status."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self._core.version_statuses(spec.name, version):
            entry = response.model_version_status.add(
                version=status.version, state=_State.Value(status.state)
            )
            entry.status.error_code = _CODE_NUMBERS.get(status.error_code, _CODE_NUMBERS["UNKNOWN"])
            entry.status.error_message = status.error_message
        return response

    def handle_reload_config_request(
        self, request: model_management_pb2.ReloadConfigRequest, _context: object
    ) -> model_management_pb2.ReloadConfigResponse:
        """ModelService/HandleReloadConfigRequest (model_service_impl.cc)."""
        before = {name: self._metrics.counter_value(name) for name in request.metric_names}
        config = request.config
        try:
            if config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported"
                )
            for index, model in enumerate(config.model_config_list.config):
                log.info(
                    "\nConfig entry\n\tindex : %d\n\tpath : %s\n\tname : %s\n\tplatform : %s",
                    index,
                    model.base_path,
                    model.name,
                    model.model_platform,
                )
            self._core.reload_config(config)
        except ServingError as exc:
            log.error("ReloadConfig failed: %s", exc.message)
            raise
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = _CODE_NUMBERS["OK"]
        for name, value in before.items():
            response.metric.add(
                name=name, int64_value_increase=self._metrics.counter_value(name) - value
            )
        return response


def _wait(delay: float, context: grpc.ServicerContext) -> None:
    """Sleep an injected delay, ending early with DEADLINE_EXCEEDED at the client's deadline."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise ServingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE)
    if delay <= 0:
        return
    ended = threading.Event()
    # The callback runs when the call ends (deadline, cancellation, shutdown), so no
    # thread sleeps on for a call nobody waits for any more. Whatever is raised then,
    # the client has gone or already seen DEADLINE_EXCEEDED.
    context.add_callback(ended.set)
    timeout = delay if remaining is None else min(delay, remaining)
    if ended.wait(timeout) or timeout < delay:
        raise ServingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE)
