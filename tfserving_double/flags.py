"""tensorflow_model_server flags, parsed the way TensorFlow's flag parser does.

TFS/model_servers/main.cc declares the flags and parses them with
tensorflow/core/util/command_line_flags.cc: only `--name=value` is understood
(booleans also take a bare `--name`); a known flag with a bad value stops the
server with the usage text; an unknown argument is only reported
("unknown argument: ...", the first one) and the server starts anyway.
Defaults are TFS/model_servers/server.h `Options`. Reference:
docs/tf-serving-protocol.md §9.

`--control_port` is the double's own flag (fault injection, see faults.py).
Flags in `_ACCEPTED` are known to TF Serving and accepted, but change nothing
in the double.

Deviations from TF Serving's defaults:
- `--port` (gRPC) defaults to 0, gRPC off; TF Serving's default is 8500. Tests
  start several doubles at once and pass `--port=N` explicitly when they want
  gRPC, so none of them races for 8500. `--port=0` keeps gRPC off (in TF
  Serving it needs `--grpc_socket_path` instead).
- `--grpc_max_threads` defaults to max(16, 4 x CPUs), not 4 x CPUs: each
  in-flight Python gRPC call holds a thread, and on a 2-core machine 8 threads
  would queue a 16-client benchmark inside the double.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

_ACCEPTED: dict[str, type] = {
    "grpc_socket_path": str,
    "grpc_channel_arguments": str,
    "enable_per_model_batching_parameters": bool,
    "num_load_threads": int,
    "num_unload_threads": int,
    "flush_filesystem_caches": bool,
    "tensorflow_session_parallelism": int,
    "tensorflow_intra_op_parallelism": int,
    "tensorflow_inter_op_parallelism": int,
    "ssl_config_file": str,
    "platform_config_file": str,
    "per_process_gpu_memory_fraction": float,
    "remove_unused_fields_from_bundle_metagraph": bool,
    "prefer_tflite_model": bool,
    "num_tflite_pools": int,
    "num_tflite_interpreters_per_pool": int,
    "enable_signature_method_name_check": bool,
    "xla_cpu_compilation_enabled": bool,
    "enable_profiler": bool,
    "enable_grpc_healthcheck_service": bool,
    "use_alts_credentials": bool,
    "thread_pool_factory_config_file": str,
    "mixed_precision": str,
}


@dataclass
class Flags:
    """The flags the double acts on, with TF Serving's defaults (deviations above)."""

    port: int = 0
    grpc_max_threads: int = max(16, 4 * (os.cpu_count() or 1))
    enable_serialization_as_tensor_content: bool = False
    rest_api_port: int = 0
    rest_api_num_threads: int = 4 * (os.cpu_count() or 1)
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    allow_version_labels_for_unavailable_models: bool = False
    file_system_poll_wait_seconds: int = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    enable_model_warmup: bool = True
    saved_model_tags: str = "serve"
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    version: bool = False
    control_port: int = 0


@dataclass
class ParsedArgs:
    """Flags plus what the parser could not use."""

    flags: Flags
    unknown: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def parse_flags(argv: list[str]) -> ParsedArgs:
    """Parse `--name=value` arguments (argv without the program name)."""
    flags = Flags()
    kinds: dict[str, type] = {
        f.name: type(getattr(flags, f.name)) for f in dataclasses.fields(flags)
    }
    parsed = ParsedArgs(flags)
    for arg in argv:
        name, separator, text = arg.removeprefix("--").partition("=")
        has_value = bool(separator)
        kind = kinds.get(name) or _ACCEPTED.get(name)
        if not arg.startswith("--") or kind is None or (kind is not bool and not has_value):
            parsed.unknown.append(arg)
            continue
        try:
            value = _convert(kind, text, has_value)
        except ValueError:
            parsed.errors.append(f"Couldn't interpret value ={text} for flag {name}.")
            continue
        if name in kinds:
            setattr(flags, name, value)
    return parsed


def _convert(kind: type, text: str, has_value: bool) -> object:
    if kind is bool:
        if not has_value:
            return True
        if text in ("true", "false"):
            return text == "true"
        raise ValueError(text)
    if kind is int:
        return int(text.strip())
    if kind is float:
        return float(text)
    return text
