"""`python -m gateway`'s arguments: KServe's custom-transformer flags, as settings.

KServe runs a custom transformer's container with its own arguments appended
to the container's args, each only when the args do not already name it
(kserve/kserve pkg/apis/serving/v1beta1/transformer_custom.go, `GetContainer`):
`--model_name <InferenceService name> --predictor_host <predictor service>.<namespace>
--http_port 8080`, then `--workers N` when the component sets
containerConcurrency, and, in ModelMesh mode only, `--protocol`. Its Python
model server also knows `--predictor_protocol` and `--predictor_use_ssl`
(python/kserve/kserve/model_server.py), which users add by hand.

Each flag maps to a setting, and a flag given wins over the environment
(pydantic-settings lets init arguments override it):

- `--model_name NAME` -> MODEL_NAME (KServe's TF Serving predictor serves the
  model under the InferenceService's name, the same NAME);
- `--predictor_host HOST[:PORT]` (a DNS name, an IPv4 address or a bracketed IPv6
  one, port 1-65535: gateway/addresses.py) -> INFERENCE_BACKEND=tfserving,
  TF_SERVING_URL=http://HOST[:PORT] (a bare address, which the settings complete
  with MODEL_NAME's predict path) and TF_SERVING_TRANSPORT=rest: the predictor
  host is the predictor's Service, which forwards port 80 to TF Serving's REST
  port only; `--predictor_use_ssl true` makes it https;
- `--http_port P` -> PORT;
- `--workers N` is accepted and ignored: the gateway is one process (its thread
  pools are sized from the CPUs it may use), and replicas scale it;
- `--protocol`/`--predictor_protocol v1` is accepted: v1 is TF Serving's own
  REST API, which the gateway speaks; v2 and grpc-v2 (the Open Inference
  Protocol) are refused, since the gateway cannot speak them.

Anything else is an error: argparse prints the usage and exits 2.
"""

import argparse
from collections.abc import Sequence
from typing import Any

from gateway.addresses import split_host_port

SPOKEN_PROTOCOLS = ("v1",)
KSERVE_PROTOCOLS = ("v1", "v2", "grpc-v2")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m gateway`; every flag is optional and defaults to the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        allow_abbrev=False,  # an unknown flag is an error, never a guess at a known one
        description=(
            "Serve the gateway. Settings come from the environment (see the README); "
            "these flags, which KServe passes to a custom transformer, override it."
        ),
    )
    parser.add_argument("--model_name", help="MODEL_NAME: the model requests get by default")
    parser.add_argument(
        "--predictor_host",
        metavar="HOST[:PORT]",
        help="TF Serving's REST address: sets TF_SERVING_URL, with TF_SERVING_TRANSPORT=rest",
    )
    parser.add_argument("--http_port", type=int, help="PORT: where the gateway listens")
    parser.add_argument(
        "--predictor_use_ssl",
        type=_boolean,
        default=False,
        metavar="true|false",
        help="call --predictor_host over https",
    )
    for flag in ("--predictor_protocol", "--protocol"):
        parser.add_argument(
            flag,
            choices=KSERVE_PROTOCOLS,
            help="the predictor's protocol; only v1 (TF Serving's REST API) is spoken",
        )
    parser.add_argument(
        "--workers", type=int, help="accepted and ignored: the gateway runs as one process"
    )
    return parser


def settings_from_arguments(argv: Sequence[str]) -> dict[str, Any]:
    """The settings `argv` names, as keyword arguments for Settings (exits 2 on a bad flag)."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    for protocol in (arguments.protocol, arguments.predictor_protocol):
        if protocol is not None and protocol not in SPOKEN_PROTOCOLS:
            parser.error(
                f"the predictor protocol {protocol} is not spoken: the gateway calls TF "
                "Serving's REST API (KServe's v1)"
            )
    overrides: dict[str, Any] = {}
    if arguments.model_name is not None:
        overrides["model_name"] = arguments.model_name
    if arguments.http_port is not None:
        overrides["port"] = arguments.http_port
    if arguments.predictor_host is not None:
        host = arguments.predictor_host
        try:
            split_host_port(host, port_required=False)
        except ValueError as exc:
            parser.error(f"--predictor_host takes HOST[:PORT] (no scheme or path): {exc}")
        scheme = "https" if arguments.predictor_use_ssl else "http"
        overrides["inference_backend"] = "tfserving"
        overrides["tf_serving_url"] = f"{scheme}://{host}"
        overrides["tf_serving_transport"] = "rest"
    elif arguments.predictor_use_ssl:
        parser.error("--predictor_use_ssl needs --predictor_host")
    return overrides


def _boolean(text: str) -> bool:
    """KServe's spelling of a boolean flag's value (true/false, yes/no, 1/0)."""
    lowered = text.lower()
    if lowered in ("true", "yes", "y", "on", "1"):
        return True
    if lowered in ("false", "no", "n", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
