"""gateway/tfserving/protos/: what `make protos` writes, and able to live beside TensorFlow.

The generated modules describe files named as TensorFlow's own, so each import order
runs in a fresh interpreter: one process can import a module only once.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from processes import ROOT, child_env

GENERATED = ROOT / "gateway" / "tfserving" / "protos"


def test_the_committed_code_is_what_make_protos_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "tools/generate_protos.py", "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = {path.name: path.read_text() for path in tmp_path.glob("*_pb2.py*")}
    committed = {path.name: path.read_text() for path in GENERATED.glob("*_pb2.py*")}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make protos`: {stale} differ from what protos/ generates"


IMPORT_OURS = "from gateway.tfserving.protos import predict_pb2 as ours"
IMPORT_TENSORFLOWS = (
    "import tensorflow\nfrom tensorflow_serving.apis import predict_pb2 as official"
)
# A TensorFlow of another version than protos/ copies: the default pool then holds a
# tensorflow/core/framework/tensor.proto that differs from ours.
REGISTER_ANOTHER_TENSOR_PROTO = """
from google.protobuf import descriptor_pb2, descriptor_pool
other = descriptor_pb2.FileDescriptorProto(
    name="tensorflow/core/framework/tensor.proto", package="tensorflow", syntax="proto3"
)
other.message_type.add(name="TensorProto").field.add(
    name="dtype", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32
)
descriptor_pool.Default().Add(other)
"""
ROUND_TRIP = """
request = ours.PredictRequest()
request.model_spec.name = "mobilenet"
request.model_spec.version.value = 2
request.inputs["images"].tensor_content = b"pixels"
wire = request.SerializeToString()
back = ours.PredictRequest.FromString(wire)
assert back.model_spec.version.value == 2 and back.inputs["images"].tensor_content == b"pixels"
"""
CROSS_CHECK = """
theirs = official.PredictRequest.FromString(wire)
assert theirs.model_spec.version.value == 2 and theirs.inputs["images"].tensor_content == b"pixels"
assert official.PredictRequest is not ours.PredictRequest
"""


@pytest.mark.parametrize(
    "script",
    [
        IMPORT_TENSORFLOWS + "\n" + IMPORT_OURS + ROUND_TRIP + CROSS_CHECK,
        IMPORT_OURS + "\n" + IMPORT_TENSORFLOWS + ROUND_TRIP + CROSS_CHECK,
        REGISTER_ANOTHER_TENSOR_PROTO + IMPORT_OURS + ROUND_TRIP,
    ],
    ids=["tensorflow-first", "gateway-first", "another-tensorflow-version"],
)
def test_the_generated_modules_import_beside_tensorflows(script: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", script + "\nprint('ok')"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
