"""Replaying a version's warm-up requests before it becomes AVAILABLE.

TF Serving reads `assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`tensorflow.serving.PredictionLog`, and runs every record once while the
version is still LOADING; any failure fails the load
(TFS/servables/tensorflow/saved_model_warmup.cc, saved_model_warmup_util.cc;
flag `--enable_model_warmup`, default true). Reference:
docs/tf-serving-protocol.md §10 (warm-up) and docs/model-contract.md.

The double replays `predict_log` records. classify, regress and
multi_inference records are skipped with a warning (the double serves no
classify/regress API); other log types fail the load as in TF Serving.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from .errors import ServingError, invalid_argument
from .servable import Servable

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000

log = logging.getLogger("tfserving_double")


def run_warmup(servable: Servable, version_path: str) -> int:
    """Run the warm-up records of one version; return how many predict records ran."""
    path = os.path.join(version_path, WARMUP_FILE)
    if not os.path.exists(path):
        return 0
    ran = 0
    for count, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator(), 1):
        if count > MAX_RECORDS:
            raise invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
            )
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        kind = entry.WhichOneof("log_type")
        if kind == "predict_log":
            request = entry.predict_log.request
            tensors = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            servable.run(request.model_spec.signature_name, tensors)
            ran += 1
        elif kind in ("classify_log", "regress_log", "multi_inference_log"):
            log.warning("Skipping %s warm-up record: not served by the double", kind)
        else:
            raise ServingError("INVALID_ARGUMENT", f"Unsupported log_type for warmup: {kind}")
    return ran
