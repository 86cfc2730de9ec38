"""Asking TF Serving, over REST, which version it serves for TF_SERVING_URL, and its signature.

Protocol facts come from docs/tf-serving-protocol.md §2: status is
`GET /v1/models/NAME` and answers 200 even when nothing is AVAILABLE; metadata
is `GET .../versions/N/metadata` (read over REST even when predicting over gRPC).

TF_SERVING_URL may pin what is served (§1):
- `.../versions/N:predict`: the status asked is `GET /v1/models/NAME/versions/N`,
  and only version N counts;
- `.../labels/L:predict`: status ignores labels (§2.1), so the version L names
  is read from `GET /v1/models/NAME/labels/L/metadata` on every read.

A reader only asks: the backend's status() reports what a read finds, and
its watcher (watcher.py) is the one that learns from it.
"""

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx

from gateway.backend import ModelSignature, ModelStatus
from gateway.settings import Settings
from gateway.tfserving.documents import parse_signature, parse_status, state_of
from gateway.tfserving.rest_transport import error_message


class UnusableVersion(Exception):
    """A version TF Serving serves whose signature this gateway cannot use; says why."""


@dataclass(frozen=True)
class Served:
    """What TF Serving serves now, as one read found it."""

    status: ModelStatus
    # The served version's metadata when the read already fetched it (a label's is).
    metadata: dict[str, Any] | None = None


class StatusReader:
    """Reads TF Serving's status (and a label's version) through the backend's HTTP client."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings):
        self._client = client
        self._model_url = settings.tf_serving_model_url
        self._pinned_version = settings.tf_serving_version
        self._label = settings.tf_serving_version_label
        self._status_url = self._model_url
        self._pin = ""  # what TF_SERVING_URL pins, for messages
        if self._pinned_version is not None:
            self._status_url = f"{self._model_url}/versions/{self._pinned_version}"
            self._pin = f"version {self._pinned_version}"
        elif self._label is not None:
            self._pin = f"label {self._label!r}"

    async def read(self) -> Served:
        """What TF Serving serves now: the pinned version, the label's, or the newest."""
        try:
            response = await self._client.get(self._status_url)
        except httpx.HTTPError as exc:
            return Served(ModelStatus(False, "UNREACHABLE", detail=_unreachable(exc)))
        if response.status_code != 200:
            detail = self._pinned(error_message(response))
            return Served(ModelStatus(False, "NOT_FOUND", detail=detail))
        status = parse_status(response, self._pinned_version)
        if not status.ready:
            return Served(replace(status, detail=self._pinned(status.detail)))
        if self._label is not None:
            return await self._read_label(status, self._label)
        return Served(status)

    async def signature(
        self, version: int, metadata: dict[str, Any] | None = None
    ) -> ModelSignature:
        """`version`'s signature (metadata fetched unless given); UnusableVersion says why not."""
        document = metadata if metadata is not None else await self._metadata(version)
        try:
            signature = parse_signature(document, version)
        except ValueError as exc:
            raise UnusableVersion(str(exc)) from exc
        return replace(signature, metadata=document)

    async def _metadata(self, version: int) -> Any:
        url = f"{self._model_url}/versions/{version}/metadata"
        try:
            response = await self._client.get(url)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UnusableVersion("its metadata is unreadable") from exc

    def _pinned(self, detail: str) -> str:
        """`detail`, saying what TF_SERVING_URL pins when it pins something."""
        return f"TF_SERVING_URL pins {self._pin}: {detail}" if self._pin else detail

    async def _read_label(self, status: ModelStatus, label: str) -> Served:
        """The status of the version `label` names now, with that version's metadata."""
        url = f"{self._model_url}/labels/{quote(label, safe='')}/metadata"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            return Served(ModelStatus(False, "UNREACHABLE", detail=_unreachable(exc)))
        unready = replace(status, ready=False, state="NOT_FOUND", version=None)
        if response.status_code != 200:
            return Served(replace(unready, detail=self._pinned(error_message(response))))
        try:
            document = response.json()
            version = int(document["model_spec"]["version"])
        except (ValueError, KeyError, TypeError):
            detail = self._pinned("TF Serving sent unreadable metadata")
            return Served(replace(unready, state="UNKNOWN", detail=detail))
        state = state_of(status.document, version)
        if state != "AVAILABLE":
            detail = self._pinned(f"it names version {version}, which is {state}")
            return Served(replace(unready, state=state, version=version, detail=detail))
        return Served(replace(status, version=version), document)


def _unreachable(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "TF Serving did not answer in time"
    return "TF Serving is not reachable"
