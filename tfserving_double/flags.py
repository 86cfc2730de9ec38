"""tensorflow_model_server flags, parsed the way TensorFlow's flag parser does.

TFS/model_servers/main.cc declares the flags and parses them with
tensorflow/core/util/command_line_flags.cc: only `--name=value` is understood
(booleans also take a bare `--name`); a known flag with a bad value stops the
server with the usage text; an unknown argument is only reported
("unknown argument: ...", the first one) and the server starts anyway.
Defaults are TFS/model_servers/server.h `Options`. Reference:
docs/tf-serving-protocol.md §9.

`--control_port` (fault injection, see faults.py) and `--listen_host` are the
double's own flags. TF Serving binds gRPC to 0.0.0.0 (model_servers/server.cc)
and REST to "::" or else every IPv4 address (util/net_http/server/internal/
evhttp_server.cc), and has no flag to choose; the double binds every
port (gRPC, REST, control) to `--listen_host`, an IPv4 address, 127.0.0.1 by
default, so several doubles can share one port number on 127.0.0.1, 127.0.0.2
and 127.0.0.3 (Linux routes all of 127/8 to the loopback interface), as
replicas behind one headless Service do on their pod addresses.
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
import re
from dataclasses import dataclass

# absl::SimpleAtoi into an int32: optional spaces and sign, decimal digits.
_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
_INT32 = range(-(2**31), 2**31)

ChannelArgument = tuple[str, int | str]

_ACCEPTED: dict[str, type] = {
    "grpc_socket_path": str,
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
    # "key=value,..." for the gRPC server (`channel_arguments` below).
    grpc_channel_arguments: str = ""
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
    listen_host: str = "127.0.0.1"


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


def channel_arguments(text: str) -> list[ChannelArgument]:
    """`--grpc_channel_arguments` as gRPC server options (server.cc `parseGrpcChannelArgs`).

    Split on "," then on "=": the key is the first piece and the value the
    second, as server.cc takes `key_val[0]` and `key_val[1]`; a value that
    `absl::SimpleAtoi` reads as an int32 is passed as that int, any other as a
    string (`BuildAndStart`). A pair without "=" raises ValueError: server.cc
    would index past the end of its split, the double refuses to start.
    """
    arguments: list[ChannelArgument] = []
    for pair in text.split(",") if text else []:
        pieces = pair.split("=")
        if len(pieces) < 2:
            raise ValueError(f"grpc_channel_arguments: {pair!r} is not key=value")
        arguments.append((pieces[0], _int32_or_text(pieces[1])))
    return arguments


def _int32_or_text(value: str) -> int | str:
    if _INT.fullmatch(value) and int(value) in _INT32:
        return int(value)
    return value


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
