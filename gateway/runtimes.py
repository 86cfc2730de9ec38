"""The in-process model runtimes the embedded backend can use, behind one small interface.

TensorFlow Lite with XNNPACK ran MobileNetV2 about 4.5 times faster than
TensorFlow on this project's 2-core machine (README, Performance), so `auto`
prefers it whenever the version carries `assets.extra/model.tflite`.
Both are imported only when chosen: the gateway image has neither.

A version exported with `--quantize int8` also carries
`assets.extra/model_int8.tflite`, a full-integer copy; EMBEDDED_PRECISION=int8
serves that one instead (TensorFlow Lite only), and nothing else: a version
without it fails to load, rather than quietly answering in float32.
"""

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from gateway.backend import probabilities_output
from gateway.metrics import TFLITE_CALLS

TFLITE_FILE = Path("assets.extra") / "model.tflite"
INT8_TFLITE_FILE = Path("assets.extra") / "model_int8.tflite"
SIGNATURE = "serving_default"

Precision = Literal["float32", "int8"]


class ModelFileProblem(Exception):
    """A model file the version cannot be served from; the message names no host path,
    so /health can show it."""


class ModelFileMissing(ModelFileProblem, FileNotFoundError):
    """The version lacks the file the settings ask for."""


@dataclass(frozen=True)
class TensorNames:
    """What a runtime learned from the model: names, image size and class count."""

    input_name: str
    output_name: str
    image_size: tuple[int, int]  # (width, height)
    num_classes: int


class Runtime(Protocol):
    """A loaded model that scores uint8 batches; safe to call from several threads."""

    name: str
    precision: Precision
    tensors: TensorNames

    def run(self, images: np.ndarray) -> np.ndarray: ...

    def warm(self, batch_sizes: tuple[int, ...]) -> None:
        """Run every batch size once on every copy, so no request pays first-call setup."""
        ...


def load_runtime(
    version_dir: Path,
    choice: Literal["auto", "tflite", "tensorflow"],
    threads: int,
    copies: int,
    precision: Precision = "float32",
) -> Runtime:
    """Load `version_dir` with the chosen runtime (`auto`: TFLite when its file exists).

    precision int8 takes the version's int8 TFLite copy, with `choice` auto or tflite
    (the settings refuse int8 with tensorflow).
    """
    if precision == "int8":
        int8_path = version_dir / INT8_TFLITE_FILE
        if not int8_path.is_file():
            raise ModelFileMissing(
                f"EMBEDDED_PRECISION=int8 needs {INT8_TFLITE_FILE.as_posix()}, which this "
                "version does not have: export a version with it (export_model.py --quantize "
                "int8; --version N --force rewrites this one)"
            )
        return LiteRuntime(int8_path, threads, copies, precision="int8")
    tflite_path = version_dir / TFLITE_FILE
    if choice == "tflite" or (choice == "auto" and tflite_path.is_file()):
        return LiteRuntime(tflite_path, threads, copies)
    return TensorFlowRuntime(version_dir)


class TensorFlowRuntime:
    """The SavedModel's serving signature, run by TensorFlow (thread-safe as is)."""

    name = "tensorflow"
    precision: Precision = "float32"

    def __init__(self, version_dir: Path):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf  # only this runtime needs TensorFlow

        self._module = tf.saved_model.load(str(version_dir))  # keeps the variables alive
        self._function = self._module.signatures[SIGNATURE]
        _, input_specs = self._function.structured_input_signature
        ((input_name, input_spec),) = input_specs.items()
        if input_spec.dtype != tf.uint8:
            raise ValueError(f"input {input_name!r} is {input_spec.dtype.name}; expected uint8")
        outputs = self._function.structured_outputs
        output_name = probabilities_output(outputs)
        _, height, width, _ = input_spec.shape.as_list()
        self.tensors = TensorNames(
            input_name, output_name, (width, height), int(outputs[output_name].shape[-1])
        )

    def run(self, images: np.ndarray) -> np.ndarray:
        outputs = self._function(**{self.tensors.input_name: images})
        result: np.ndarray = outputs[self.tensors.output_name].numpy()
        return result

    def warm(self, batch_sizes: tuple[int, ...]) -> None:
        for batch in batch_sizes:
            self.run(_blank(self.tensors, batch))


class LiteRuntime:
    """The TFLite copy of the signature, with interpreters sized for the load.

    On this project's 2 cores, one 2-thread interpreter answers a lone image
    fastest (3.4 ms), while under load two 2-thread interpreters side by side
    would put four threads on two cores: the gateway served 196 requests/s at
    c=16 that way against 211 with 1-thread copies (README, Performance). So a
    call that finds the runtime idle borrows the wide interpreter (all
    `threads`), and calls that overlap each borrow one of `copies` narrow ones
    (`threads // copies` each). A LiteRT interpreter is not thread-safe: each
    is used by one call at a time.
    """

    name = "tflite"

    def __init__(self, path: Path, threads: int, copies: int, precision: Precision = "float32"):
        self.precision = precision
        from ai_edge_litert.interpreter import Interpreter  # only this runtime needs LiteRT

        def runner(threads_each: int) -> Any:
            interpreter = Interpreter(model_path=str(path), num_threads=threads_each)
            return interpreter.get_signature_runner(SIGNATURE)

        narrow_threads = max(1, threads // copies)
        self._narrow: queue.Queue[Any] = queue.Queue()
        for _ in range(copies):
            self._narrow.put(runner(narrow_threads))
        self._wide = runner(threads) if threads > narrow_threads else None
        self._running = 0
        self._running_lock = threading.Lock()

        probe = Interpreter(model_path=str(path))
        details = probe.get_signature_runner(SIGNATURE)
        inputs, outputs = details.get_input_details(), details.get_output_details()
        ((input_name, input_detail),) = inputs.items()
        if input_detail["dtype"] != np.uint8:
            raise ValueError(f"input {input_name!r} is {input_detail['dtype']}; expected uint8")
        output_name = probabilities_output(outputs)
        if outputs[output_name]["dtype"] != np.float32:
            # A uint8 or int8 output would be ranked as numbers that wrap around.
            raise ModelFileProblem(
                f"{path.name} answers {output_name!r} as {np.dtype(outputs[output_name]['dtype'])}"
                ", not float32 probabilities"
            )
        if precision == "int8" and not any(
            tensor["dtype"] == np.int8 for tensor in probe.get_tensor_details()
        ):
            # A float copy under the int8 name would be served and labelled int8.
            raise ModelFileProblem(f"{path.name} holds no int8 tensor: it is not an int8 model")
        _, height, width, _ = (int(n) for n in input_detail["shape"])
        classes = int(outputs[output_name]["shape"][-1])
        self.tensors = TensorNames(input_name, output_name, (width, height), classes)

    def run(self, images: np.ndarray) -> np.ndarray:
        runner, wide = self._borrow()
        try:
            result: np.ndarray = runner(**{self.tensors.input_name: images})[
                self.tensors.output_name
            ]
            return result.copy()  # the output buffer belongs to the interpreter
        finally:
            self._give_back(runner, wide)

    def warm(self, batch_sizes: tuple[int, ...]) -> None:
        runners = [self._narrow.get() for _ in range(self._narrow.qsize())]
        try:
            for runner in [*runners, *([self._wide] if self._wide else [])]:
                for batch in batch_sizes:
                    runner(**{self.tensors.input_name: _blank(self.tensors, batch)})
        finally:
            for runner in runners:
                self._narrow.put(runner)

    def _borrow(self) -> tuple[Any, bool]:
        """The wide interpreter when no other call is running, else a narrow one."""
        with self._running_lock:
            self._running += 1
            wide = self._running == 1 and self._wide is not None
        TFLITE_CALLS.labels(interpreter="wide" if wide else "narrow").inc()
        return (self._wide, True) if wide else (self._narrow.get(), False)

    def _give_back(self, runner: Any, wide: bool) -> None:
        if not wide:
            self._narrow.put(runner)
        with self._running_lock:
            self._running -= 1


def _blank(tensors: TensorNames, batch: int) -> np.ndarray:
    width, height = tensors.image_size
    return np.zeros((batch, height, width, 3), dtype=np.uint8)
