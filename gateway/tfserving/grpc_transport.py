"""Predict over TF Serving's gRPC API: pixels as one binary TensorProto.

`/tensorflow.serving.PredictionService/Predict` (docs/tf-serving-protocol.md §6)
carries the uint8 batch as `tensor_content` (§7), 150 KB an image instead of about
600 KB of JSON, and neither side parses text. The messages are classes generated
from TF Serving's .proto files (messages.py), so the gateway needs grpcio and
protobuf but not TensorFlow.

Each batch names, in its ModelSpec, the version whose signature (and labels) the
gateway holds, as REST's `.../versions/N:predict` does: the version TF_SERVING_URL
pins, the one its label named at the watcher's last look, or else the newest
AVAILABLE one then. Without it TF Serving would answer from its newest version as
soon as that is AVAILABLE, with pixels prepared for the old one's input; with it,
a version already unloaded answers NOT_FOUND and the backend follows the switch.

Each call carries the ids of the requests in its batch as `x-request-id`
metadata (request_id.py, batching.py), which TF Serving's access to the call's
metadata (and any proxy in between) can log beside the gateway's own lines.

The channel balances calls, not connections, and ejects a replica most of whose
calls fail (service_config.py). A call is sent once more, which round_robin
gives to the next replica, when its first attempt failed in a way another
replica may not: UNAVAILABLE (the replica died with the call), NOT_FOUND (this
replica lacks the version; if every one does, the retry says so too and the
backend follows the switch, client.py) or DEADLINE_EXCEEDED at the first
attempt's own deadline, half of TF_SERVING_TIMEOUT_SECONDS (a hung replica;
TF Serving slow everywhere runs out of the second half too and is still the
gateway's 504). Each retry is counted, and one that answered is logged as a
WARNING (at most once a minute per status), so a hung or skewed replica is
seen, not just survived.
"""

import time

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from gateway import metrics, request_id
from gateway.backend import ModelSignature
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable
from gateway.tfserving.messages import (
    answering_version,
    output_tensor,
    predict_request,
    read_tensor,
)
from gateway.tfserving.predictor import (
    check_shape,
    servable_gone,
    timed_out,
    unreachable,
    unreadable_response,
)
from gateway.tfserving.protos.predict_pb2 import PredictResponse
from gateway.tfserving.retry_report import RetryReport
from gateway.tfserving.service_config import BALANCING_OPTIONS, may_name_several_replicas

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
# TF Serving accepts messages up to INT32_MAX; grpc-python's default receive cap is 4 MB.
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    # Reconnect quickly after TF Serving restarts instead of backing off for minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    *BALANCING_OPTIONS,
]
# A DEADLINE_EXCEEDED before this share of the gateway's timeout is not the gateway's.
_OWN_DEADLINE_SHARE = 0.95
# With several replicas, the first attempt's share of the timeout; the retry gets
# what is left. Half, so a call stuck on a hung replica has as long again on
# another; a healthy call takes a small part of it (docs/load-balancing.md).
_FIRST_ATTEMPT_SHARE = 0.5
# First-attempt failures worth one more attempt (Predict is idempotent), by the
# metric's `reason` label. Only UNAVAILABLE when the target is one address: the
# retry would ask the same server the same question, or cut a slow call short.
_RETRIED_ON_ONE = {grpc.StatusCode.UNAVAILABLE: "unavailable"}
_RETRIED_ON_SEVERAL = {
    **_RETRIED_ON_ONE,
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline_exceeded",
}


class GrpcPredictor:
    """One HTTP/2 channel to TF Serving's gRPC port, multiplexing every request."""

    transport = "grpc"

    def __init__(
        self,
        target: str,
        model_name: str,
        timeout_seconds: float,
        reconnect_seconds: float,
    ):
        self._model_name = model_name
        self._timeout_seconds = timeout_seconds
        self._reconnect_seconds = reconnect_seconds
        self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        # No serializers: the call carries bytes, which predict() writes and reads, so a
        # reply that does not parse becomes the gateway's error, not a grpc one.
        self._predict = self._channel.unary_unary(PREDICT_METHOD)
        several = may_name_several_replicas(target)
        self._retried = _RETRIED_ON_SEVERAL if several else _RETRIED_ON_ONE
        self._first_attempt_seconds = timeout_seconds * (_FIRST_ATTEMPT_SHARE if several else 1)
        self._several = several
        self._report = RetryReport(target)

    async def close(self) -> None:
        await self._channel.close()

    def problem(self) -> str:
        """Why predictions cannot go through right now, or ''; also nudges a reconnect.

        With round_robin the channel is READY while any replica's connection is,
        and TRANSIENT_FAILURE only once every one has failed: one replica down
        does not make the gateway unready.
        """
        state = self._channel.get_state(try_to_connect=True)
        if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            return "TF Serving's gRPC port is not reachable"
        return ""

    async def predict(
        self, images: np.ndarray, signature: ModelSignature
    ) -> tuple[np.ndarray, int | None]:
        request = predict_request(
            self._model_name,
            signature.signature_name,
            {signature.input_name: np.ascontiguousarray(images, dtype=np.uint8)},
            version=signature.version,
        )
        started = time.monotonic()
        try:
            reply = await self._call(request.SerializeToString())
        except grpc.aio.AioRpcError as exc:
            elapsed = time.monotonic() - started
            raise translate_rpc_error(exc, self._timeout_seconds, elapsed) from exc
        return read_reply(reply, signature, images.shape[0])

    async def _call(self, request: bytes) -> bytes:
        started = time.monotonic()
        metadata = outbound_metadata()
        try:
            reply: bytes = await self._predict(
                request, timeout=self._first_attempt_seconds, metadata=metadata
            )
            return reply
        except grpc.aio.AioRpcError as exc:
            remaining = self._timeout_seconds - (time.monotonic() - started)
            reason = self._retried.get(exc.code())
            if reason is None or remaining <= 0:
                raise
            first_failure = exc
        metrics.TF_SERVING_RETRIES.labels(reason).inc()
        reply = await self._retry(request, metadata, remaining, wait=reason == "unavailable")
        # Another attempt answered what the first could not: one replica is unlike
        # the others (a version rollout fails both attempts, and is not reported).
        self._report.answered_after(first_failure)
        return reply

    async def _retry(
        self, request: bytes, metadata: tuple[tuple[str, str], ...], remaining: float, wait: bool
    ) -> bytes:
        """The call once more; round_robin gives it to the next replica still connected."""
        if not wait:
            # The first replica was connected, and so is the next one picked.
            reply: bytes = await self._predict(request, timeout=remaining, metadata=metadata)
            return reply
        # UNAVAILABLE: with another replica up the retry goes there at once; with
        # none (one TF Serving, restarting), wait briefly for it to connect.
        retry_started = time.monotonic()
        try:
            reply = await self._predict(
                request,
                timeout=min(remaining, self._reconnect_seconds),
                metadata=metadata,
                wait_for_ready=True,
            )
        except grpc.aio.AioRpcError as exc:
            connected = self._channel.get_state() == grpc.ChannelConnectivity.READY
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not connected:
                raise unreachable() from exc
            left = remaining - (time.monotonic() - retry_started)
            if exc.code() != grpc.StatusCode.UNAVAILABLE or not (self._several and connected):
                raise
            if left <= 0:
                raise
            # A replica that has just died can still be picked once more, before
            # round_robin hears its connection is gone: one more try, on whichever
            # replica is connected now.
            metrics.TF_SERVING_RETRIES.labels("unavailable").inc()
            reply = await self._predict(request, timeout=left, metadata=metadata)
        return reply


def outbound_metadata() -> tuple[tuple[str, str], ...]:
    """The call's gRPC metadata: `x-request-id` with the batch's request ids, when known.

    gRPC metadata keys are lower-case; an id is visible ASCII, a valid metadata value.
    """
    known = request_id.current()
    return (("x-request-id", known),) if known else ()


def read_reply(reply: bytes, signature: ModelSignature, rows: int) -> tuple[np.ndarray, int | None]:
    """Scores from a serialized PredictResponse, and the version that produced them."""
    try:
        response = PredictResponse.FromString(reply)
        probabilities = read_tensor(output_tensor(response, signature.output_name))
    except (DecodeError, ValueError, KeyError) as exc:
        raise unreadable_response() from exc
    # The version that answered, as TF Serving names it (the one the ModelSpec asked for).
    return check_shape(probabilities, signature, rows), answering_version(response)


def translate_rpc_error(
    exc: grpc.aio.AioRpcError, timeout_seconds: float, elapsed_seconds: float
) -> Exception:
    """gRPC status codes (TF's error codes, passed through) to the gateway's errors."""
    code, details = exc.code(), (exc.details() or "").strip()[:500]
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        if elapsed_seconds >= timeout_seconds * _OWN_DEADLINE_SHARE:
            return timed_out(timeout_seconds)
        # Long before the gateway's own deadline: TF Serving's (a batching queue's,
        # a session's) ran out, or the reconnect wait did. Say only what is known.
        return BackendTimeout(
            f"TF Serving's predict ended DEADLINE_EXCEEDED after {elapsed_seconds:.1f} s "
            f"(the gateway waits {timeout_seconds:g} s): {details}"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return servable_gone(details)
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable("TF Serving is not reachable or unavailable; try again shortly.")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        # gRPC's own size cap (a reply over _MAX_MESSAGE_BYTES): the same batch
        # fails the same way every time, so no Retry-After.
        return BackendError(f"A predict message is over gRPC's size limit: {details}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return BackendUnavailable(f"TF Serving is overloaded: {details}")
    return BackendError(f"TF Serving answered {code.name}: {details}")
