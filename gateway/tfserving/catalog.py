"""What TF Serving serves of each model: its versions and their states, a label's version.

The fleet (gateway/fleet.py) asks on every watcher pass, and before it opens a lane
for a version or label a request names, so a version TF Serving does not have is a
404 naming those it has, rather than a lane that is never ready; /models asks to
list them. Metadata of a version never changes while it is loaded, so signatures are
kept per (model, version) for as long as that version is listed.
"""

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from gateway.backend import ModelSignature
from gateway.errors import BackendUnavailable
from gateway.settings import Settings
from gateway.tfserving.documents import parse_signature

# How long a version listing is reused: well under the watchers' STATUS_POLL_SECONDS.
LISTING_TTL_SECONDS = 0.5


@dataclass(frozen=True)
class VersionState:
    """One version TF Serving lists for a model, and its state there."""

    version: int
    state: str
    error: str = ""


class TFServingCatalog:
    """Reads model status and metadata over TF Serving's REST API."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None):
        parts = urlsplit(settings.tf_serving_url)
        self._server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.tf_serving_timeout_seconds,
                connect=settings.tf_serving_connect_timeout_seconds,
            )
        )
        self._signatures: dict[tuple[str, int], ModelSignature] = {}
        self._listings: dict[str, tuple[float, list[VersionState]]] = {}

    async def close(self) -> None:
        await self._client.aclose()

    def model_url(self, model: str) -> str:
        return f"{self._server}/v1/models/{quote(model, safe='')}"

    async def versions(self, model: str, max_age: float = 0.0) -> list[VersionState]:
        """Every version TF Serving lists for `model`, highest first; [] for a model it lacks.

        A listing read less than `max_age` seconds ago is reused: requests naming
        versions that are not served (a 404 each) pass LISTING_TTL_SECONDS, so they
        do not each become a status call to TF Serving.
        """
        cached = self._listings.get(model)
        now = time.monotonic()
        if cached is not None and now - cached[0] < max_age:
            return cached[1]
        listed = await self._read_versions(model)
        self._listings[model] = (now, listed)
        return listed

    async def _read_versions(self, model: str) -> list[VersionState]:
        response = await self._get(self.model_url(model))
        if response.status_code == 404:
            return []
        try:
            response.raise_for_status()
            entries = response.json()["model_version_status"]
            listed = [
                VersionState(int(entry["version"]), str(entry["state"]), _error_of(entry))
                for entry in entries
            ]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendUnavailable(f"TF Serving sent an unreadable status for {model}") from exc
        current = {(model, entry.version) for entry in listed if entry.state == "AVAILABLE"}
        for key in [key for key in self._signatures if key[0] == model and key not in current]:
            del self._signatures[key]
        return sorted(listed, key=lambda entry: entry.version, reverse=True)

    async def label_version(self, model: str, label: str) -> int | None:
        """The version `label` names on TF Serving now; None when TF Serving knows no such label."""
        url = f"{self.model_url(model)}/labels/{quote(label, safe='')}/metadata"
        response = await self._get(url)
        if response.status_code in (400, 404):
            return None  # TF Serving answers an unknown label with an error, not a version
        try:
            response.raise_for_status()
            return int(response.json()["model_spec"]["version"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(f"TF Serving sent unreadable metadata for {model}") from exc

    async def signature(self, model: str, version: int) -> ModelSignature | None:
        """`version`'s signature; None when its metadata is missing or unusable by the gateway."""
        key = (model, version)
        if key not in self._signatures:
            response = await self._get(f"{self.model_url(model)}/versions/{version}/metadata")
            try:
                response.raise_for_status()
                document: Any = response.json()
                self._signatures[key] = parse_signature(document, version)
            except (httpx.HTTPError, ValueError):
                return None
        return self._signatures[key]

    async def _get(self, url: str) -> httpx.Response:
        try:
            return await self._client.get(url)
        except httpx.HTTPError as exc:
            raise BackendUnavailable("TF Serving is not reachable") from exc


def _error_of(entry: Any) -> str:
    """A status entry's error message; "" when it has none (or no readable one)."""
    status = entry.get("status")
    return str(status.get("error_message", "")) if isinstance(status, dict) else ""
