"""A TensorFlow Serving test double: real REST and gRPC servers over real SavedModel versions.

The real `tensorflow_model_server` cannot run here, so the gateway's tests run
against this double. It follows TF Serving's REST and gRPC protocols as read from the TF
Serving source (github.com/tensorflow/serving, release 2.20.0; paths below are
relative to `tensorflow_serving/`), summarised in docs/tf-serving-protocol.md
(§12: what the double covers). Where the double and the real server
differ, the real server is right; each known difference is written down in the
module that has it.

Modules, one idea each:
- `__main__`: start-up order and the ready line (model_servers/main.cc, server.cc).
- `flags`: `--name=value` flags with TF Serving's names and defaults.
- `registry`: version discovery, latest policy, load/unload, state monitor.
- `servable`, `warmup`: one loaded version; its warm-up replay.
- `json_values`: RapidJSON-compatible parsing and value printing.
- `json_tensor`, `json_request`, `json_response`: one JSON value to a tensor, the
  predict request document, the predict response (util/json_tensor.cc).
- `rest`: /v1 routing and handlers (model_servers/http_rest_api_handler.cc).
- `httpd`: the HTTP/1.1 server (util/net_http/server/internal/evhttp_*.cc).
- `tensor_proto`: TensorProto to numpy and back (TF's Tensor::FromProto/AsProto*).
- `grpc_predict`: a PredictRequest checked and decoded, the PredictResponse filled
  (servables/tensorflow/predict_util.cc).
- `grpc_service`: Predict, GetModelMetadata and GetModelStatus handlers.
- `grpc_server`: the gRPC server on `--port` (model_servers/server.cc).
- `faults`: fault injection and counters, on a separate control port.
- `errors`: status codes and their HTTP mapping.

Covered: GET model status and metadata (with /versions/N; /labels/L behaves as
without a model config file), POST :predict in row and columnar form with
TF Serving's checks and error messages, gzip request bodies, the REST timeout,
gRPC Predict, GetModelMetadata and GetModelStatus on `--port` (off unless
given, see flags.py), version polling with availability-preserving reloads and
rollback, load retries, warm-up (predict records), TF Serving's flag names and
defaults.

Not covered:
- :classify and :regress, gRPC Classify, Regress, MultiInference and
  HandleReloadConfigRequest (UNIMPLEMENTED); the grpc.health.v1 service.
- Model config files, version labels and policies other than latest(1).
- Server-side batching (`--enable_batching` is accepted, requests run one by one).
- Prometheus monitoring (`--monitoring_config_file` is accepted; the path is 404).
- SSL, CORS preflight, TFLite, profiler, multiple models.
"""
