"""Export one model version: build the network, write it atomically, verify it."""

import re
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from modelexport.contract import (
    ASSETS_EXTRA,
    INFO_FILENAME,
    LABELS_FILENAME,
    WARMUP_FILENAME,
)
from modelexport.errors import ExportError
from modelexport.faults import break_classifier
from modelexport.golden import GoldenCheck, write_golden_answer
from modelexport.info import build_export_info, write_export_info
from modelexport.labels import write_labels
from modelexport.options import (
    DEFAULT_MODEL_DIR,
    DEFAULT_SEED,
    FaultName,
    QuantizeName,
    SourceName,
    default_model_name,
)
from modelexport.photo_check import PhotoCheck, check_reference_photos
from modelexport.photo_library import check_library
from modelexport.quantize import INT8_TFLITE_FILENAME, Int8Check, write_int8_tflite
from modelexport.serving import save_serving_model
from modelexport.sources import build_network
from modelexport.tflite import TFLITE_FILENAME, TfliteCheck, write_tflite
from modelexport.verify import Verification, verify_saved_model
from modelexport.warmup import write_warmup_requests
from modelexport.writer import check_version_free, next_version, staged_version

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ExportResult:
    """A published version: where it is, what it holds, and what its checks saw."""

    path: Path
    version: int
    replaced: bool
    info: dict[str, object]
    verification: Verification
    warmup_records: int
    tflite: TfliteCheck | None
    int8: Int8Check | None
    photos: PhotoCheck | None
    golden: GoldenCheck


def export_version(
    source: SourceName = "hub",
    *,
    model_dir: Path = Path(DEFAULT_MODEL_DIR),
    model_name: str | None = None,
    version: int | None = None,
    force: bool = False,
    handle: str | None = None,
    weights: Path | None = None,
    seed: int = DEFAULT_SEED,
    tflite: bool = True,
    fault: FaultName | None = None,
    quantize: QuantizeName | None = None,
) -> ExportResult:
    """Write model_dir/model_name/<version> (default: the next free number) and verify it.

    model_name defaults to the source's own folder (options.default_model_name). With
    tflite (the default) the version also carries assets.extra/model.tflite, checked
    against the SavedModel before the version is published; a source with reference
    photos must classify them right through both, or nothing is published. Every version
    carries a golden answer (golden.py) that both runtimes must give.

    fault (a testing aid, faults.py) writes a deliberately broken version: its golden
    answer is the correct classifier's, its reference photos are not checked, and both
    runtimes must answer the golden photo differently; export_info.json records it.

    quantize "int8" also writes assets.extra/model_int8.tflite (quantize.py), which
    needs the float TFLite copy to be judged against.
    """
    if quantize is not None and not tflite:
        raise ExportError("--quantize int8 writes a TensorFlow Lite copy: drop --no-tflite")
    if quantize is not None and fault is not None:
        raise ExportError("--quantize and --fault do not combine: a fault version is a test aid")
    if quantize is not None:
        check_library()  # before the slow part: calibration needs every photograph
    if model_name is None:
        model_name = default_model_name(source)
    if not MODEL_NAME.fullmatch(model_name):
        raise ExportError(f"model name {model_name!r} must be letters, digits, '_', '.' or '-'")
    model_root = model_dir / model_name
    if version is None:
        version = next_version(model_root)
    # Refuse before the slow part, so a mistaken --version costs nothing.
    replaced = check_version_free(model_root, version, force=force)
    network = build_network(source, handle=handle, weights=weights, seed=seed)
    served = network.classifier if fault is None else break_classifier(network.classifier, fault)
    with staged_version(model_root, version, force=force) as staging:
        save_serving_model(served, staging)
        # Reloaded from disk once, for every check below: each load takes about 2 s.
        loaded = tf.saved_model.load(str(staging))
        verification = verify_saved_model(staging, loaded)
        extra = staging / ASSETS_EXTRA
        extra.mkdir()
        tflite_check = write_tflite(staging, extra / TFLITE_FILENAME, loaded) if tflite else None
        int8_check = None
        if quantize == "int8" and tflite_check is not None:
            int8_check = write_int8_tflite(
                loaded, tflite_check.path, extra / INT8_TFLITE_FILENAME, trained=network.trained
            )
        int8_file = int8_check.path if int8_check else None
        photos = None
        # A fault's version would fail this check; its golden check shows it answers wrong.
        if network.reference_photos and fault is None:
            tflite_file = tflite_check.path if tflite_check else None
            photos = check_reference_photos(
                staging, tflite_file, network.reference_photos, loaded, int8_file
            )
        write_labels(extra / LABELS_FILENAME)
        info = build_export_info(
            model_name=model_name,
            version=version,
            network=network,
            verification=verification,
            tflite=tflite_check,
            fault=fault,
            int8=int8_check,
        )
        write_export_info(extra / INFO_FILENAME, info)
        records = write_warmup_requests(extra / WARMUP_FILENAME, model_name)
        # Last: it reads the version's files back as the gateway will.
        golden = write_golden_answer(
            staging,
            tflite_check.path if tflite_check else None,
            int8_file=int8_file,
            correct_classifier=None if fault is None else network.classifier,
            fault=fault,
            loaded=loaded,
        )
    return ExportResult(
        path=model_root / str(version),
        version=version,
        replaced=replaced,
        info=info,
        verification=verification,
        warmup_records=records,
        tflite=tflite_check,
        int8=int8_check,
        photos=photos,
        golden=golden,
    )
