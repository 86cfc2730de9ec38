"""Reading a text-format protobuf file the way TF Serving's ParseProtoTextFile does.

TFS/util/proto_util.h `ParseProtoTextFile` maps a file it cannot read to
TensorFlow's I/O status (a missing file: NOT_FOUND "PATH; No such file or
directory") and text that does not parse to INVALID_ARGUMENT "Invalid
protobuf file: 'PATH'"; protobuf's TextFormat logs where the parse failed.
The model config (model_config.py) and monitoring config
(monitoring_config.py) files are read through here.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from google.protobuf import message, text_format

from .errors import ServingError, invalid_argument

log = logging.getLogger("tfserving_double")

M = TypeVar("M", bound=message.Message)


def parse_proto_text_file(path: str, proto: M) -> M:
    """Parse the text file at `path` into `proto`; failures are ParseProtoTextFile's statuses."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except FileNotFoundError as exc:
        raise ServingError("NOT_FOUND", f"{path}; No such file or directory") from exc
    except OSError as exc:
        raise ServingError("UNKNOWN", f"{path}; {exc.strerror}") from exc
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        log.error("Error parsing text-format %s: %s", proto.DESCRIPTOR.full_name, exc)
        raise invalid_argument(f"Invalid protobuf file: '{path}'") from exc
    return proto
