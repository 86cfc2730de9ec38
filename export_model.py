"""Export an ImageNet classifier as a TF Serving model version, models/<name>/<N>/.

The layout and signature are docs/model-contract.md's. Examples:
python export_model.py                                   # TF Hub MobileNetV2 (needs network)
python export_model.py --source efficientnet-lite0       # real weights offline, from a package:
                                                         #   models/efficientnet_lite0/<N>/
python export_model.py --source random                   # untrained; offline wiring/tests
python export_model.py --source keras-weights --weights mobilenet_v2_..._1.0_224.h5
python export_model.py --handle /copied/tfhub/model      # TF Hub model copied by hand
python export_model.py --source efficientnet-lite0 --quantize int8   # + an int8 TFLite copy
python export_model.py --no-tflite                       # TF Serving only: no model.tflite
python export_model.py --source random --fault broken-preprocessing   # testing aid: answers wrong
"""

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from modelexport.contract import DEFAULT_MODEL_NAME, NUM_CLASSES
from modelexport.options import (
    DEFAULT_HUB_HANDLE,
    DEFAULT_MODEL_DIR,
    DEFAULT_SEED,
    DEFAULT_SOURCE,
    FAULTS,
    QUANTIZATIONS,
    SOURCE_ENV,
    SOURCE_MODEL_NAMES,
    SOURCES,
    SourceName,
)

if TYPE_CHECKING:
    from modelexport.export import ExportResult
    from modelexport.golden import GoldenCheck
    from modelexport.photo_check import PhotoCheck
    from modelexport.quantize import Int8Check
    from modelexport.tflite import TfliteCheck

# The option each source takes besides the common ones.
SOURCE_OPTIONS: dict[str, str | None] = {
    "hub": "--handle",
    "keras-weights": "--weights",
    "random": "--seed",
    "efficientnet-lite0": None,
}


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        description="Write an ImageNet classifier model version for TF Serving, atomically.",
        epilog="Exit status: 0 written and verified, 1 export refused or failed, 2 bad usage.",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        help=f"where the weights come from (default: ${SOURCE_ENV}, else {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--handle",
        help=f"TF Hub handle or local SavedModel directory (default {DEFAULT_HUB_HANDLE})",
    )
    parser.add_argument(
        "--weights", type=Path, help="Keras MobileNetV2 ImageNet .h5 file, for keras-weights"
    )
    parser.add_argument("--model-dir", type=Path, default=Path(DEFAULT_MODEL_DIR))
    named = ", ".join(
        f"{name} for --source {source}" for source, name in SOURCE_MODEL_NAMES.items()
    )
    parser.add_argument(
        "--model-name",
        help=f"model folder under --model-dir (default {DEFAULT_MODEL_NAME}; {named})",
    )
    parser.add_argument(
        "--version", type=positive_int, help="version number (default: the next free one)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument(
        "--seed", type=int, help=f"weight seed for --source random (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--no-tflite",
        action="store_true",
        help="skip assets.extra/model.tflite, the TensorFlow Lite copy for the gateway's "
        "embedded backend (for versions served only by TF Serving)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="also write assets.extra/model_int8.tflite: an int8 TensorFlow Lite copy (integer "
        "kernels throughout, the final softmax in float32) calibrated on real photographs; "
        "refused below 75%% top-1 agreement with the float copy for trained weights (the "
        "figure is printed and kept in export_info.json). Needs the float copy (not with "
        "--no-tflite); not with --fault; adds about 30 s. The gateway serves it with "
        "INFERENCE_BACKEND=embedded EMBEDDED_PRECISION=int8 (docs/int8.md)",
    )
    parser.add_argument(
        "--fault",
        choices=FAULTS,
        help="TESTING AID, never for real serving: write a deliberately broken version. "
        "broken-preprocessing: the serving graph feeds the classifier BGR instead of RGB, "
        "while the version's golden answer (assets.extra/golden_answer.json) stays the "
        "correct model's, so the gateway's golden-answer check must find it. The reference "
        "photo check is skipped, export_info.json records the fault, and the export is "
        "refused unless the version really answers the golden photo differently",
    )
    return parser


def positive_int(text: str) -> int:
    """Parse a version number, which TF Serving needs to be a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def resolve_source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SourceName:
    """Pick the source from --source, else $MODEL_SOURCE, else hub; reject stray options."""
    source = args.source or os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE
    if source not in SOURCES:
        parser.error(f"{SOURCE_ENV}={source!r} is not one of {', '.join(SOURCES)}")
    stray = {"--handle": args.handle, "--weights": args.weights, "--seed": args.seed}
    allowed = SOURCE_OPTIONS[source]
    for flag, value in stray.items():
        if value is not None and flag != allowed:
            parser.error(f"{flag} does not apply to --source {source}")
    if source == "keras-weights" and args.weights is None:
        parser.error("--source keras-weights needs --weights FILE")
    if args.quantize and args.no_tflite:
        parser.error("--quantize int8 writes a TensorFlow Lite copy: drop --no-tflite")
    if args.quantize and args.fault:
        parser.error("--quantize and --fault do not combine: a fault version is a test aid")
    return cast(SourceName, source)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ info and warning lines; must run before TensorFlow is imported."""
    # 3 also hides the cuInit ERROR line that a CUDA build prints on a machine without a
    # GPU driver; real failures still reach the user as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # The serving graph wraps a Keras 3 model, which only the TensorFlow backend can save.
    os.environ["KERAS_BACKEND"] = "tensorflow"


def format_summary(result: "ExportResult") -> str:
    """Describe the written version for a human: signature, check, source, path."""
    info = result.info
    check = result.verification
    lines = [f"Exported {info['model_name']} version {result.version}: {result.path}"]
    if result.replaced:
        lines.append(
            "  replaced the existing version; a running TF Serving keeps the copy it loaded "
            "until it restarts (export a new number to roll out without a restart)"
        )
    lines.append(f"  source:    {info['source']} ({info['source_detail']})")
    lines.append(f"  trained:   {'yes' if info['trained'] else 'NO'}")
    lines.append(f"  signature: {info['signature_name']}")
    for kind, tensors in (("input ", check.inputs), ("output", check.outputs)):
        for name, tensor in tensors.items():
            lines.append(f"    {kind} {name:<14} {tensor.dtype:<8} {list(tensor.shape)}")
    lines.append(
        f"  check:     reloaded from disk; uint8 batch {list(check.batch_shape)} "
        f"-> probabilities {list(check.output_shape)}"
    )
    lines += describe_tflite(result.tflite)
    lines += describe_int8(result.int8)
    lines += describe_photos(result.photos)
    lines += describe_golden(result.golden)
    int8_files = ", model_int8.tflite, golden_answer_int8.json" if result.int8 else ""
    lines.append(
        f"  assets:    labels.txt ({NUM_CLASSES} labels), export_info.json, "
        f"tf_serving_warmup_requests ({result.warmup_records} request){int8_files}"
    )
    if result.golden.fault is not None:
        banner = "!" * 78
        lines += [
            banner,
            f"!! DELIBERATELY BROKEN (--fault {result.golden.fault}): a testing aid. This",
            "!! version answers wrong on purpose; its golden answer is the correct model's.",
            "!! Never serve it for real.",
            banner,
        ]
    if not info["trained"]:
        banner = "!" * 78
        lines += [
            banner,
            "!! UNTRAINED: random weights. Its predictions are meaningless; use it only for",
            "!! wiring and tests. Export --source hub, efficientnet-lite0 or keras-weights to",
            "!! classify.",
            banner,
        ]
    return "\n".join(lines)


def describe_tflite(check: "TfliteCheck | None") -> list[str]:
    """Describe the TensorFlow Lite copy: file, size and how closely it follows the SavedModel."""
    if check is None:
        return ["  tflite:    skipped (--no-tflite)"]
    return [
        f"  tflite:    assets.extra/{check.path.name} ({check.size / 1e6:.1f} MB, float32)",
        f"             uint8 batch {list(check.batch_shape)}: same top-5 as the SavedModel, "
        f"max abs diff {check.max_abs_diff:.1e}",
    ]


def describe_int8(check: "Int8Check | None") -> list[str]:
    """Describe the int8 copy: file, size, and how often its top-1 is the float copy's."""
    if check is None:
        return []
    lines = [
        f"  int8:      assets.extra/{check.path.name} ({check.size / 1e6:.1f} MB, full integer, "
        f"calibrated on {check.calibration_images} crops of real photographs)",
        f"             top-1 as the float copy's on {check.top1_agreement:.1%} of "
        f"{check.judged} photographs and crops",
    ]
    lines += [f"             differs: {view}" for view in check.disagreements]
    return lines


def describe_photos(check: "PhotoCheck | None") -> list[str]:
    """List each runtime's top-3 for each reference photo, once they all came out right."""
    if check is None:
        return []
    lines = ["  photos:    right top-1 for every reference photo (224x224, bilinear); top-3:"]
    for result in check.results:
        ranked = ", ".join(f"{p.class_id} {p.label} {p.probability:.3f}" for p in result.top)
        lines.append(f"    {result.photo.name:<12} {result.runtime:<10} {ranked}")
    if check.max_abs_diff is not None:
        lines.append(
            f"    SavedModel and TFLite differ by at most {check.max_abs_diff:.1e} on these"
        )
    return lines


def describe_golden(check: "GoldenCheck") -> list[str]:
    """Say what the golden answer is and how far each runtime's answer is from it."""
    answer = check.expected
    decisive = "top-1 decisive" if answer.top1_decisive else "top-1 not decisive: L1 decides"
    lines = [
        f"  golden:    assets.extra/golden_answer.json, {answer.photo_file}: "
        f"{answer.top1} {check.top1_label} {answer.top1_probability:.3f} "
        f"(margin {answer.top1_margin:.3f}, {decisive}; tolerance L1 {answer.l1_tolerance})"
    ]
    verdict = "differs on purpose" if check.fault else "agrees"
    for runtime, comparison in check.answers.items():
        if runtime == "TFLite int8":
            # Held to its own answer (golden_answer_int8.json): L1 0 by construction.
            lines.append(f"    {runtime:<10} agrees with its own golden_answer_int8.json")
            continue
        lines.append(f"    {runtime:<10} {verdict}: L1 {comparison.l1:.1e}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, export one version and print what was written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    source = resolve_source(args, parser)
    quiet_tensorflow()
    from modelexport.errors import ExportError
    from modelexport.export import export_version

    try:
        result = export_version(
            source,
            model_dir=args.model_dir,
            model_name=args.model_name,
            version=args.version,
            force=args.force,
            handle=args.handle,
            weights=args.weights,
            seed=DEFAULT_SEED if args.seed is None else args.seed,
            tflite=not args.no_tflite,
            fault=args.fault,
            quantize=args.quantize,
        )
    except ExportError as exc:
        print(f"export_model.py: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
