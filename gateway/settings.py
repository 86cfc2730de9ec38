"""The gateway's configuration: one validated class, read from the environment at start-up."""

import re
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.addresses import check_grpc_target, split_host_port
from gateway.cpus import available_cpus

# TF Serving's REST predict path (docs/tf-serving-protocol.md §1):
# /v1/models/{name}[/versions/{N} | /labels/{label}]:predict
_PREDICT_PATH = re.compile(
    r"^(?P<model>/v1/models/(?P<name>[^/:]+))"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?:predict$"
)
_INT64_MAX = 2**63 - 1  # TF Serving reads a version as int64 (docs/tf-serving-protocol.md §1)


class Settings(BaseSettings):
    """Every knob the gateway has; names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(extra="ignore", protected_namespaces=())

    inference_backend: Literal["tfserving", "embedded"] = "tfserving"
    tf_serving_url: str = "http://localhost:8501/v1/models/mobilenet:predict"
    model_name: str = Field(default="mobilenet", pattern=r"^[A-Za-z0-9_.-]+$")
    model_base_path: Path = Path("models")
    # This model's folder of numbered versions, when it is not MODEL_BASE_PATH/MODEL_NAME
    # (a model config file's base_path may name any folder).
    model_path: Path | None = None

    # gRPC sends pixels as one binary tensor; REST as JSON integers (see README, Performance).
    tf_serving_transport: Literal["grpc", "rest"] = "grpc"
    # TF Serving's gRPC target (gateway/addresses.py has the forms: host:port, dns:///,
    # ipv4:, ...); empty = TF_SERVING_URL's host on port 8500.
    tf_serving_grpc_target: str = ""
    tf_serving_timeout_seconds: PositiveFloat = 10.0
    tf_serving_connect_timeout_seconds: PositiveFloat = 2.0
    tf_serving_max_connections: PositiveInt = 64
    status_poll_seconds: PositiveFloat = 2.0

    # Concurrent requests coalesce into one model call: at most this many images,
    # waiting at most BATCH_TIMEOUT_MS for more once the first has arrived.
    # 4, measured by `make bench` on 2 cores: larger batches saved no CPU per
    # image (TFLite, TensorFlow past 4) but raised p99 and memory.
    batch_max_size: PositiveInt = 4
    batch_timeout_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    # Model calls in flight at once: one forms while another runs.
    batch_concurrency: PositiveInt = 2

    # Embedded backend: TensorFlow Lite (XNNPACK) when the version carries
    # assets.extra/model.tflite, else TensorFlow; or force one.
    embedded_runtime: Literal["auto", "tflite", "tensorflow"] = "auto"
    # int8: the embedded backend serves the version's int8 TFLite copy (export_model.py
    # --quantize int8), which every answer then names; a version without one does not
    # load. For every model and version the process serves.
    embedded_precision: Literal["float32", "int8"] = "float32"
    # TFLite threads: all of them for a call made while the model is idle, an
    # equal share for each of the BATCH_CONCURRENCY calls that overlap.
    inference_threads: PositiveInt = Field(default_factory=available_cpus)
    # A version that fails to load (say, copied in non-atomically) is tried again
    # after this many seconds, the wait doubling after each failure up to the max.
    embedded_load_retry_seconds: PositiveFloat = 1.0
    embedded_load_retry_max_seconds: PositiveFloat = 60.0

    default_top_k: PositiveInt = 5
    max_upload_bytes: PositiveInt = 10 * 1024 * 1024
    # POST /predict/batch: files per request, and all of them together in bytes.
    # The total defaults to MAX_UPLOAD_BYTES, so a batch holds no more memory in an
    # in-flight slot than a single upload may (the sizing in the README stays true);
    # raise both together with MAX_IN_FLIGHT in mind. A request's images go to the
    # model in one call (gateway/batching.py), and TF Serving's max_batch_size
    # (deploy/tfserving/batching.pbtxt) is 32.
    max_batch_files: int = Field(default=16, ge=1, le=32)
    max_batch_bytes: PositiveInt | None = None
    max_image_pixels: PositiveInt = 40_000_000
    preprocess_threads: PositiveInt = Field(default_factory=available_cpus)
    # Memory every decode at once may take, each weighed from its header before it
    # starts (gateway/decode_budget.py); the others wait. 704 decodes anything the
    # default MAX_IMAGE_PIXELS lets in (a 40 MP WebP is weighed at 634 MiB); below
    # 64 ordinary photos would not fit.
    decode_memory_budget_mb: int = Field(default=704, ge=64)

    # Overload: at most this many /predict requests in flight or queued; the
    # next one gets 503 with Retry-After at once instead of waiting in a queue.
    # 32 keeps a two-core gateway's queue short and its worst-case memory at
    # about 1.2 GiB (README, Deployment security and sizing).
    max_in_flight: PositiveInt = 32
    # Per-request deadline; a client may ask for less with X-Request-Timeout (seconds).
    request_timeout_seconds: PositiveFloat = 30.0
    # After a grace period, an upload slower than this on average is cut off (408),
    # so trickling clients cannot hold in-flight slots for the whole deadline; 0 = off.
    min_upload_bytes_per_second: int = Field(default=16 * 1024, ge=0)
    upload_grace_seconds: PositiveFloat = 2.0
    # After SIGTERM (docs/graceful-shutdown.md): not ready at once, new predictions
    # refused with 503, accepted ones given at most this long to finish, then exit 0.
    # 25 outlasts any prediction that can still succeed (a model call is bounded by
    # TF_SERVING_TIMEOUT_SECONDS, 10, and a normal request takes well under a
    # second) yet stays under Kubernetes' default 30 s grace period; the grace
    # period must exceed this plus any preStop sleep.
    shutdown_timeout_seconds: PositiveFloat = 25.0

    # Optional API keys (comma-separated, or one per line in a file); empty = no auth.
    api_keys: str = Field(default="", repr=False)
    api_keys_file: Path | None = None
    # Origins allowed to call the API from a browser (comma-separated); empty = CORS off.
    cors_allow_origins: str = ""

    # Several models, their versions and version labels: TF Serving's text-format
    # ModelServerConfig (`--model_config_file`), read by the gateway too; empty =
    # MODEL_NAME alone, its newest version. Re-read every MODEL_CONFIG_POLL_SECONDS.
    model_config_file: Path | None = None
    model_config_poll_seconds: PositiveFloat = 5.0
    # Canary split and shadow traffic (docs/rollouts.md): a JSON file re-read while
    # serving, also replaced through PUT /admin/routing (API keys required).
    routing_file: Path | None = None
    # A prediction whose top-1 probability is below this is flagged low_confidence.
    low_confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # Readiness replays each served version's golden answer at most this often.
    golden_check_seconds: PositiveFloat = 60.0
    # Top-1 classes remembered per version for the class-distribution drift gauge.
    drift_window: PositiveInt = 1000

    # Logs: "text" for people, "json" for one object per line (collectors).
    log_format: Literal["text", "json"] = "text"
    # OpenTelemetry traces of each request's stages, exported over OTLP when set.
    otel_exporter_otlp_endpoint: str = ""
    otel_service_name: str = "ml-inference-gateway"

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    def batch_bytes_limit(self) -> int:
        """MAX_BATCH_BYTES, or MAX_UPLOAD_BYTES when it is not set."""
        return self.max_batch_bytes or self.max_upload_bytes

    @model_validator(mode="after")
    def _check_tf_serving_url(self) -> "Settings":
        if "tf_serving_url" not in self.model_fields_set:
            # Unset: the default server, asked for MODEL_NAME (whatever model that is).
            self.tf_serving_url = f"http://localhost:8501/v1/models/{self.model_name}:predict"
            return self
        parts = urlsplit(self.tf_serving_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"TF_SERVING_URL must be an http(s) URL, got {self.tf_serving_url!r}")
        # A bad address passed here once, and failed later as a traceback in start-up
        # (httpx.InvalidURL) or as a gateway that never became ready.
        try:
            split_host_port(parts.netloc, port_required=False)
        except ValueError as exc:
            raise ValueError(f"TF_SERVING_URL's address must be HOST[:PORT]: {exc}") from None
        if parts.fragment or self.tf_serving_url != self.tf_serving_url.strip():
            raise ValueError(
                f"TF_SERVING_URL must not carry a #fragment or blanks, got {self.tf_serving_url!r}"
            )
        if parts.path.strip("/") == "":
            # A bare server address: build the predict URL from MODEL_NAME.
            path = f"/v1/models/{self.model_name}:predict"
            self.tf_serving_url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
            return self
        match = _PREDICT_PATH.match(parts.path)
        if match is None:
            raise ValueError(
                "TF_SERVING_URL must be TF Serving's predict URL, such as "
                "http://tensorflow-serving:8501/v1/models/mobilenet:predict "
                f"(got {self.tf_serving_url!r})"
            )
        if parts.query:
            raise ValueError("TF_SERVING_URL must not carry a query string: TF Serving rejects it")
        if match["name"] != self.model_name and "model_name" in self.model_fields_set:
            raise ValueError(
                f"TF_SERVING_URL names model {match['name']!r} but MODEL_NAME is "
                f"{self.model_name!r}; make them agree"
            )
        if match["version"] is not None and int(match["version"]) > _INT64_MAX:
            raise ValueError(
                f"TF_SERVING_URL names version {match['version']}, beyond int64: "
                "TF Serving cannot have it"
            )
        pinned = match["version"] is not None or match["label"] is not None
        if pinned and self.inference_backend == "embedded":
            raise ValueError(
                "TF_SERVING_URL names a version or label, but INFERENCE_BACKEND=embedded "
                "serves the newest version under MODEL_BASE_PATH; drop the "
                "/versions/N or /labels/L part, or use INFERENCE_BACKEND=tfserving"
            )
        self.model_name = match["name"]
        return self

    @property
    def tf_serving_version(self) -> int | None:
        """The version TF_SERVING_URL pins (`.../versions/N:predict`), or None."""
        match = _PREDICT_PATH.match(urlsplit(self.tf_serving_url).path)
        return int(match["version"]) if match and match["version"] is not None else None

    @property
    def tf_serving_version_label(self) -> str | None:
        """The version label TF_SERVING_URL pins (`.../labels/L:predict`), decoded, or None."""
        match = _PREDICT_PATH.match(urlsplit(self.tf_serving_url).path)
        return unquote(match["label"]) if match and match["label"] is not None else None

    @property
    def tf_serving_model_url(self) -> str:
        """The model's status URL, `.../v1/models/NAME`, whatever version TF_SERVING_URL pins."""
        parts = urlsplit(self.tf_serving_url)
        match = _PREDICT_PATH.match(parts.path)
        path: str = match["model"] if match else parts.path.removesuffix(":predict")
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    @field_validator("model_config_file", "routing_file", "model_path", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        # Compose passes `${ROUTING_FILE:-}` as an empty string: no file, not Path(".").
        return None if value == "" else value

    @field_validator("tf_serving_grpc_target")
    @classmethod
    def _check_grpc_target(cls, target: str) -> str:
        # Otherwise a bad target shows only as a channel that never connects.
        return target if target == "" else check_grpc_target(target)

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, name: str) -> str:
        # "." or ".." would make MODEL_BASE_PATH/MODEL_NAME the base folder or its parent.
        if set(name) == {"."}:
            raise ValueError("MODEL_NAME must name a folder, not '.' or '..'")
        return name

    @model_validator(mode="after")
    def _check_precision(self) -> "Settings":
        if self.embedded_precision == "int8" and self.inference_backend != "embedded":
            raise ValueError(
                "EMBEDDED_PRECISION=int8 needs INFERENCE_BACKEND=embedded: TF Serving serves "
                "the float32 SavedModel"
            )
        if self.embedded_precision == "int8" and self.embedded_runtime == "tensorflow":
            raise ValueError(
                "EMBEDDED_PRECISION=int8 runs the TensorFlow Lite int8 copy; "
                "EMBEDDED_RUNTIME=tensorflow has no int8 model (use auto or tflite)"
            )
        return self

    @model_validator(mode="after")
    def _check_api_keys_file(self) -> "Settings":
        if self.api_keys_file is not None and not self.api_keys_file.is_file():
            raise ValueError(f"API_KEYS_FILE {self.api_keys_file} is not a readable file")
        return self

    def accepted_api_keys(self) -> frozenset[str]:
        """Every key from API_KEYS and API_KEYS_FILE; empty when authentication is off."""
        keys = [key.strip() for key in self.api_keys.split(",")]
        if self.api_keys_file is not None:
            keys += [line.strip() for line in self.api_keys_file.read_text().splitlines()]
        return frozenset(key for key in keys if key and not key.startswith("#"))

    @property
    def cors_origins(self) -> list[str]:
        """The CORS allow-list; empty means no CORS headers at all."""
        return [origin.strip() for origin in self.cors_allow_origins.split(",") if origin.strip()]

    @property
    def grpc_target(self) -> str:
        """Where the gRPC transport connects: the setting, or the REST host on port 8500."""
        if self.tf_serving_grpc_target:
            return self.tf_serving_grpc_target
        host = urlsplit(self.tf_serving_url).hostname or "localhost"
        return f"[{host}]:8500" if ":" in host else f"{host}:8500"

    @cached_property  # on the request path: built once, not per call
    def model_dir(self) -> Path:
        """Where this model's numbered versions live on local disk."""
        return self.model_path or self.model_base_path / self.model_name
