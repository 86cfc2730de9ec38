"""EfficientNet-Lite0 in TensorFlow, its weights taken from a PyTorch state dict.

The architecture is EfficientNet-B0's without squeeze-and-excitation, with ReLU6 and
with the stem (32 channels) and head (1280) left unscaled: the changes Google made for
the Lite family. The state dict follows the layout of the lukemelas EfficientNet-PyTorch
port (`_conv_stem`, `_blocks.<i>._expand_conv`, ...); its convolutions pad like
TensorFlow's "SAME" (for a stride of 2, the extra pixel goes bottom and right), which
TensorFlow does natively, so no explicit padding appears here.

Every tensor of the state dict is used exactly once (batch-norm step counters aside),
so a file of another layout is refused instead of half loaded.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from modelexport.errors import CheckpointUnreadable

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000
BATCH_NORM_EPSILON = 1e-3
# Counters of training steps: in every batch norm, read by nothing at inference.
UNUSED_SUFFIX = ".num_batches_tracked"


@dataclass(frozen=True)
class Stage:
    """A run of MBConv blocks; only the first one strides and changes the width."""

    expansion: int
    kernel: int
    stride: int
    repeats: int
    channels: int


STAGES = (
    Stage(expansion=1, kernel=3, stride=1, repeats=1, channels=16),
    Stage(expansion=6, kernel=3, stride=2, repeats=2, channels=24),
    Stage(expansion=6, kernel=5, stride=2, repeats=2, channels=40),
    Stage(expansion=6, kernel=3, stride=2, repeats=3, channels=80),
    Stage(expansion=6, kernel=5, stride=1, repeats=3, channels=112),
    Stage(expansion=6, kernel=5, stride=2, repeats=4, channels=192),
    Stage(expansion=6, kernel=3, stride=1, repeats=1, channels=320),
)


@dataclass(frozen=True)
class BlockShape:
    """One MBConv block: input width, expansion, depthwise kernel, stride and output width."""

    inputs: int
    expansion: int
    kernel: int
    stride: int
    outputs: int


def block_shapes() -> Iterator[BlockShape]:
    """Yield the 16 blocks of EfficientNet-Lite0 in order."""
    inputs = STEM_CHANNELS
    for stage in STAGES:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            yield BlockShape(inputs, stage.expansion, stage.kernel, stride, stage.channels)
            inputs = stage.channels


class StateDict:
    """The state dict's arrays, handed out once each in TensorFlow's layouts."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = dict(arrays)

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Remove and return the array called name, refusing any other shape."""
        array = self.arrays.pop(name, None)
        if array is None:
            raise CheckpointUnreadable(f"the state dict has no {name} (not EfficientNet-Lite0?)")
        if array.shape != shape or array.dtype != np.float32:
            raise CheckpointUnreadable(
                f"{name} is {array.dtype} {list(array.shape)}; EfficientNet-Lite0 needs "
                f"float32 {list(shape)}"
            )
        return array

    def conv_kernel(self, name: str, inputs: int, outputs: int, kernel: int) -> np.ndarray:
        """A convolution's weight: PyTorch's (out, in, kh, kw) as TensorFlow's (kh, kw, in, out)."""
        return self.take(name, (outputs, inputs, kernel, kernel)).transpose(2, 3, 1, 0)

    def depthwise_kernel(self, name: str, channels: int, kernel: int) -> np.ndarray:
        """A depthwise weight: PyTorch's (channels, 1, kh, kw) as TensorFlow's (kh, kw, c, 1)."""
        return self.take(name, (channels, 1, kernel, kernel)).transpose(2, 3, 0, 1)

    def batch_norm(self, prefix: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch norm at inference as y = x * scale + shift, folded in float64."""
        gamma, beta, mean, variance = (
            self.take(f"{prefix}.{part}", (channels,)).astype(np.float64)
            for part in ("weight", "bias", "running_mean", "running_var")
        )
        scale = gamma / np.sqrt(variance + BATCH_NORM_EPSILON)
        return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)

    def check_all_used(self) -> None:
        """Refuse a state dict holding weights this architecture has no place for."""
        left = sorted(name for name in self.arrays if not name.endswith(UNUSED_SUFFIX))
        if left:
            raise CheckpointUnreadable(
                f"the state dict has {len(left)} tensors EfficientNet-Lite0 does not use, "
                f"such as {left[:3]}"
            )


class ConvNorm(tf.Module):
    """A bias-free convolution (full or depthwise), its batch norm, then ReLU6 if asked."""

    def __init__(
        self,
        kernel: np.ndarray,
        norm: tuple[np.ndarray, np.ndarray],
        *,
        stride: int = 1,
        depthwise: bool = False,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = tf.Variable(kernel, trainable=False, name="kernel")
        self.scale = tf.Variable(norm[0], trainable=False, name="scale")
        self.shift = tf.Variable(norm[1], trainable=False, name="shift")
        self.stride = stride
        self.depthwise = depthwise
        self.activate = activate

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        strides = [1, self.stride, self.stride, 1]
        if self.depthwise:
            x = tf.nn.depthwise_conv2d(x, self.kernel, strides, padding="SAME")
        else:
            x = tf.nn.conv2d(x, self.kernel, strides, padding="SAME")
        x = x * self.scale + self.shift
        return tf.nn.relu6(x) if self.activate else x


class MBConvBlock(tf.Module):
    """Inverted residual: 1x1 expansion, depthwise convolution, 1x1 linear projection."""

    def __init__(self, weights: StateDict, prefix: str, shape: BlockShape) -> None:
        super().__init__()
        wide = shape.inputs * shape.expansion
        self.expand = (
            ConvNorm(
                weights.conv_kernel(f"{prefix}._expand_conv.weight", shape.inputs, wide, 1),
                weights.batch_norm(f"{prefix}._bn0", wide),
            )
            if shape.expansion != 1
            else None
        )
        self.depthwise = ConvNorm(
            weights.depthwise_kernel(f"{prefix}._depthwise_conv.weight", wide, shape.kernel),
            weights.batch_norm(f"{prefix}._bn1", wide),
            stride=shape.stride,
            depthwise=True,
        )
        self.project = ConvNorm(
            weights.conv_kernel(f"{prefix}._project_conv.weight", wide, shape.outputs, 1),
            weights.batch_norm(f"{prefix}._bn2", shape.outputs),
            activate=False,
        )
        self.residual = shape.stride == 1 and shape.inputs == shape.outputs

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(tf.Module):
    """Normalised float images [batch, 224, 224, 3] -> 1000 ImageNet logits."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__(name="efficientnet_lite0")
        weights = StateDict(arrays)
        self.stem = ConvNorm(
            weights.conv_kernel("_conv_stem.weight", 3, STEM_CHANNELS, 3),
            weights.batch_norm("_bn0", STEM_CHANNELS),
            stride=2,
        )
        self.blocks = [
            MBConvBlock(weights, f"_blocks.{index}", shape)
            for index, shape in enumerate(block_shapes())
        ]
        self.head = ConvNorm(
            weights.conv_kernel("_conv_head.weight", STAGES[-1].channels, HEAD_CHANNELS, 1),
            weights.batch_norm("_bn1", HEAD_CHANNELS),
        )
        fc_weight = weights.take("_fc.weight", (IMAGENET_CLASSES, HEAD_CHANNELS))
        self.fc_kernel = tf.Variable(fc_weight.T, trainable=False, name="fc_kernel")
        self.fc_bias = tf.Variable(
            weights.take("_fc.bias", (IMAGENET_CLASSES,)), trainable=False, name="fc_bias"
        )
        weights.check_all_used()

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        features = tf.reduce_mean(self.head(x), axis=[1, 2])
        return tf.matmul(features, self.fc_kernel) + self.fc_bias
