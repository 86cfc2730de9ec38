"""Deliberately broken versions: a testing aid, written only by `export_model.py --fault`.

The gateway's readiness check replays each version's golden answer (golden.py) and
must notice a version that loads, honours the contract and answers with confidence,
yet answers wrong. Such a version cannot be made by hand without TensorFlow, so the
exporter makes one on request:

broken-preprocessing: the serving graph hands the classifier its pixels in BGR
order, the channel order OpenCV decodes to, a classic preprocessing slip. The
signature is unchanged (uint8 RGB images in, probabilities out), so TF Serving,
the TFLite copy and every contract check accept the version; only its answers move.

The golden answer of such a version is the correct classifier's, so replaying it
shows the fault. To keep that honest: export_info.json records the fault, the exporter
prints a warning banner, only the reference-photo check (which would refuse the
version) is skipped, and the golden check is turned around rather than dropped: the
exporter insists that both runtimes answer the golden photograph differently from
its golden answer, or the fault would demonstrate nothing.
"""

import tensorflow as tf

from modelexport.options import FaultName


class SwappedChannels(tf.Module):
    """A classifier fed its uint8 images with the channels reversed: RGB read as BGR."""

    def __init__(self, classifier: tf.Module) -> None:
        super().__init__(name="swapped_channels")
        self.classifier = classifier

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.classifier(tf.reverse(images, axis=[-1]))


def break_classifier(classifier: tf.Module, fault: FaultName) -> tf.Module:
    """Wrap classifier so that the version it is exported as has `fault`."""
    if fault == "broken-preprocessing":
        return SwappedChannels(classifier)
    raise ValueError(f"unknown fault {fault!r}")
