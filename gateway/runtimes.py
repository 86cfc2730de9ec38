"""The in-process model runtimes the embedded backend can use, behind one small interface.

TensorFlow Lite with XNNPACK ran MobileNetV2 about 4.5 times faster than
TensorFlow on this project's 2-core machine (README, Performance), so `auto`
prefers it whenever the version carries `assets.extra/model.tflite`.
Both are imported only when chosen: the gateway image has neither.
"""

import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

TFLITE_FILE = Path("assets.extra") / "model.tflite"
SIGNATURE = "serving_default"


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
    tensors: TensorNames

    def run(self, images: np.ndarray) -> np.ndarray: ...

    def warm(self, batch_sizes: tuple[int, ...]) -> None:
        """Run every batch size once on every copy, so no request pays first-call setup."""
        ...


def load_runtime(
    version_dir: Path, choice: Literal["auto", "tflite", "tensorflow"], threads: int, copies: int
) -> Runtime:
    """Load `version_dir` with the chosen runtime (`auto`: TFLite when its file exists)."""
    tflite_path = version_dir / TFLITE_FILE
    if choice == "tflite" or (choice == "auto" and tflite_path.is_file()):
        return LiteRuntime(tflite_path, threads, copies)
    return TensorFlowRuntime(version_dir)


class TensorFlowRuntime:
    """The SavedModel's serving signature, run by TensorFlow (thread-safe as is)."""

    name = "tensorflow"

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
        output_name = "probabilities" if "probabilities" in outputs else next(iter(outputs))
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
    """The TFLite copy of the signature, one interpreter per concurrent caller.

    A LiteRT interpreter is not thread-safe, so `copies` of it wait in a queue
    and each call borrows one.
    """

    name = "tflite"

    def __init__(self, path: Path, threads: int, copies: int):
        from ai_edge_litert.interpreter import Interpreter  # only this runtime needs LiteRT

        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(copies):
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._pool.put(interpreter.get_signature_runner(SIGNATURE))
        probe = Interpreter(model_path=str(path))
        details = probe.get_signature_runner(SIGNATURE)
        inputs, outputs = details.get_input_details(), details.get_output_details()
        ((input_name, input_detail),) = inputs.items()
        if input_detail["dtype"] != np.uint8:
            raise ValueError(f"input {input_name!r} is {input_detail['dtype']}; expected uint8")
        output_name = "probabilities" if "probabilities" in outputs else next(iter(outputs))
        _, height, width, _ = (int(n) for n in input_detail["shape"])
        classes = int(outputs[output_name]["shape"][-1])
        self.tensors = TensorNames(input_name, output_name, (width, height), classes)

    def run(self, images: np.ndarray) -> np.ndarray:
        runner = self._pool.get()
        try:
            result: np.ndarray = runner(**{self.tensors.input_name: images})[
                self.tensors.output_name
            ]
            return result.copy()  # the output buffer belongs to the interpreter
        finally:
            self._pool.put(runner)

    def warm(self, batch_sizes: tuple[int, ...]) -> None:
        runners = [self._pool.get() for _ in range(self._pool.qsize())]
        try:
            for runner in runners:
                for batch in batch_sizes:
                    runner(**{self.tensors.input_name: _blank(self.tensors, batch)})
        finally:
            for runner in runners:
                self._pool.put(runner)


def _blank(tensors: TensorNames, batch: int) -> np.ndarray:
    width, height = tensors.image_size
    return np.zeros((batch, height, width, 3), dtype=np.uint8)
