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
- `proto_files`, `model_config`: text config files read; the model list checked.
- `version_policy`: latest, all and specific: the versions a model wants.
- `registry`: one model's version discovery, load/unload, state monitor.
- `server_core`: the config in force, one registry per model, version labels,
  ReloadConfig (model_servers/server_core.cc).
- `config_reload`: re-reading `--model_config_file` (model_servers/server.cc).
- `monitoring_config`, `monitoring`: the Prometheus page and the request
  metrics it shows (util/prometheus_exporter.cc, servables/tensorflow/util.cc).
- `servable`, `warmup`: one loaded version; its warm-up replay.
- `json_values`: RapidJSON-compatible parsing and value printing.
- `json_tensor`, `json_request`, `json_response`: one JSON value to a tensor, the
  predict request document, the predict response (util/json_tensor.cc).
- `rest`: /v1 routing and handlers (model_servers/http_rest_api_handler.cc).
- `httpd`: the HTTP/1.1 server (util/net_http/server/internal/evhttp_*.cc).
- `tensor_proto`: TensorProto to numpy and back (TF's Tensor::FromProto/AsProto*).
- `grpc_predict`: a PredictRequest checked and decoded, the PredictResponse filled
  (servables/tensorflow/predict_util.cc).
- `grpc_service`: Predict, GetModelMetadata, GetModelStatus and
  HandleReloadConfigRequest handlers.
- `grpc_server`: the gRPC server on `--port` (model_servers/server.cc).
- `faults`: fault injection and counters, on a separate control port.
- `errors`: status codes and their HTTP mapping.

Covered: GET model status and metadata (with /versions/N and /labels/L),
POST :predict in row and columnar form with TF Serving's checks and error
messages, gzip request bodies, the REST timeout, gRPC Predict,
GetModelMetadata, GetModelStatus and HandleReloadConfigRequest on `--port`
(off unless given, see flags.py), `--model_config_file` with several models,
the latest/all/specific version policies, version labels and reloads
(polled or over gRPC), version polling with availability-preserving reloads
and rollback, load retries, warm-up (predict records), the Prometheus page
with request counts and latencies, TF Serving's flag names and defaults,
`--grpc_channel_arguments` passed to the gRPC server (so
`grpc.max_connection_age_ms` ages connections out), and the double's own
`--listen_host` for several doubles on one port number (127.0.0.1, .2, .3).

Not covered:
- :classify and :regress, gRPC Classify, Regress and MultiInference
  (UNIMPLEMENTED); the grpc.health.v1 service; custom_model_config.
- Server-side batching (`--enable_batching` is accepted, requests run one by one).
- Metrics other than request_count, request_latency and runtime_latency.
- SSL, CORS preflight, TFLite, profiler.
"""
