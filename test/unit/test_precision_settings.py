"""EMBEDDED_PRECISION: int8 needs the TFLite int8 copy, so it refuses the TensorFlow runtime."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.runtimes import ModelFileMissing, load_runtime
from gateway.settings import Settings


def test_float32_is_the_default() -> None:
    assert Settings().embedded_precision == "float32"


def test_int8_with_the_tensorflow_runtime_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="EMBEDDED_RUNTIME=tensorflow has no int8 model"):
        Settings(
            inference_backend="embedded", embedded_precision="int8", embedded_runtime="tensorflow"
        )


def test_int8_in_front_of_tf_serving_is_refused_not_ignored() -> None:
    """TF Serving serves the float32 SavedModel: int8 there would be a setting that lies."""
    with pytest.raises(ValidationError, match="needs INFERENCE_BACKEND=embedded"):
        Settings(inference_backend="tfserving", embedded_precision="int8")
    assert Settings(inference_backend="embedded", embedded_precision="int8").embedded_precision == (
        "int8"
    )


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValidationError, match="embedded_precision"):
        Settings(embedded_precision="int4")  # type: ignore[arg-type]


def test_int8_without_the_copy_names_the_file_and_the_export_flag(tmp_path: Path) -> None:
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / "model.tflite").write_bytes(b"float copy only")
    with pytest.raises(ModelFileMissing, match=r"model_int8\.tflite.*--quantize int8") as raised:
        load_runtime(tmp_path, "auto", 1, 1, "int8")
    assert str(tmp_path) not in str(raised.value)  # it reaches /health: no host path
