"""`--monitoring_config_file`: a text MonitoringConfig, and where the Prometheus page lives.

TFS/config/monitoring_config.proto defines `MonitoringConfig { PrometheusConfig
prometheus_config = 1; }` and `PrometheusConfig { bool enable = 1; string path =
2; }`. tensorflow-serving-api ships no Python class for it, so the message is
declared here from those two definitions (same package, names and numbers) in
a pool of its own, and the file is read as TFS/util/proto_util.h `ParseProtoTextFile` reads it
(proto_files.py). server.cc reads the file only
when REST is on, after gRPC has started; a file that fails to read or parse
ends start-up. An empty path means `PrometheusExporter::kPrometheusPath`
(TFS/util/prometheus_exporter.cc). Reference: docs/tf-serving-protocol.md §15.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from .proto_files import parse_proto_text_file

DEFAULT_PATH = "/monitoring/prometheus/metrics"
_Field = descriptor_pb2.FieldDescriptorProto


def _message_class() -> type[message.Message]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    optional = _Field.LABEL_OPTIONAL
    prometheus.field.add(name="enable", number=1, type=_Field.TYPE_BOOL, label=optional)
    prometheus.field.add(name="path", number=2, type=_Field.TYPE_STRING, label=optional)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=_Field.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=_Field.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    made: type[message.Message] = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    )
    return made


MonitoringConfig = _message_class()


def prometheus_path(config_file: str) -> str | None:
    """The Prometheus page's path, or None when the file does not enable it."""
    # A class made at run time: mypy cannot see its fields.
    config: Any = parse_proto_text_file(config_file, MonitoringConfig())
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return str(prometheus.path) or DEFAULT_PATH
