"""export_info.json: where a version's weights came from and what it declares."""

import json
from datetime import UTC, datetime
from pathlib import Path

import tensorflow as tf

from modelexport.contract import SIGNATURE_NAME
from modelexport.labels import LABELS_PROVENANCE
from modelexport.network import Network
from modelexport.options import FaultName
from modelexport.quantize import Int8Check
from modelexport.tflite import TfliteCheck
from modelexport.verify import Verification


def build_export_info(
    *,
    model_name: str,
    version: int,
    network: Network,
    verification: Verification,
    tflite: TfliteCheck | None,
    fault: FaultName | None = None,
    int8: Int8Check | None = None,
    exported_at: datetime | None = None,
) -> dict[str, object]:
    """Return the export_info.json fields in the order docs/model-contract.md lists them."""
    moment = exported_at or datetime.now(UTC)
    return {
        "model_name": model_name,
        "version": version,
        "source": network.source,
        "source_detail": network.source_detail,
        "trained": network.trained,
        "exported_at": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tensorflow_version": tf.__version__,
        "signature_name": SIGNATURE_NAME,
        "inputs": {name: t.to_json() for name, t in verification.inputs.items()},
        "outputs": {name: t.to_json() for name, t in verification.outputs.items()},
        "labels_provenance": LABELS_PROVENANCE,
        "tflite": None if tflite is None else tflite.to_json(),
        # The full-integer copy (export_model.py --quantize int8); else null.
        "tflite_int8": None if int8 is None else int8.to_json(),
        "weights_provenance": network.weights_provenance,
        # A deliberately broken version (export_model.py --fault, a testing aid); else null.
        "fault": fault,
    }


def write_export_info(path: Path, info: dict[str, object]) -> None:
    """Write info as indented UTF-8 JSON with a trailing newline."""
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
