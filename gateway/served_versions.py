"""What each model serves now: version folders kept by its policy here, or TF Serving's list.

In-process, as with TF Serving's availability-preserving loads, a version a lane
still answers with stays served (if its folder is still there) until a version the
policy wants answers requests naming no version: while a newer one is loading or
failing to load, the older one can still be asked for, and /models lists it
AVAILABLE beside the newer one (END, with the lane's reason, when that load failed).

The fleet (gateway/fleet.py) asks before it opens a lane, and when it looks for
lanes to open or retire; /models asks to list versions and labels. In-process,
a label names a version through the config file; with TF Serving, a label is
whatever TF Serving resolves it to, read from its metadata.
"""

from collections.abc import Callable, Iterable

from gateway.backend import ModelSignature
from gateway.embedded import version_folders
from gateway.errors import BackendUnavailable, UnknownVersion
from gateway.lanes import Lane
from gateway.model_config import ModelEntry
from gateway.target import Target
from gateway.tfserving.catalog import LISTING_TTL_SECONDS, TFServingCatalog, VersionState


class ServedVersions:
    """Answers "is it served?" for versions and labels, in-process or on TF Serving."""

    def __init__(
        self,
        catalog: TFServingCatalog | None,
        from_config_file: bool,
        lanes: Callable[[], Iterable[Lane]] = tuple,
    ):
        self._catalog = catalog  # None: in-process
        self._from_config_file = from_config_file
        self._lanes = lanes  # the fleet's lanes now (in-process: who still serves what)

    @property
    def in_process(self) -> bool:
        return self._catalog is None

    async def close(self) -> None:
        if self._catalog is not None:
            await self._catalog.close()

    async def states(self, entry: ModelEntry) -> list[VersionState]:
        """Every version of `entry` and its state, highest first."""
        if self._catalog is not None:
            return await self._catalog.versions(entry.name)
        states = []
        lanes = list(self._lanes())
        failed = await self._failed_loads(entry, lanes)
        for version in self.served_here(entry):
            state = "START"  # served by the policy; no lane has loaded it yet
            for lane in lanes:
                if lane.target.model == entry.name and lane.backend.served_version() == version:
                    state = "AVAILABLE"
                    break
                if lane.target == Target(entry.name, version=version):
                    state = (await lane.backend.status()).state
            if state in ("START", "END") and version in failed:
                states.append(VersionState(version, "END", failed[version]))
            else:
                states.append(VersionState(version, state))
        return states

    async def labels(self, entry: ModelEntry) -> dict[str, int | None]:
        """Each label the config file gives `entry`, and the version it names where it is served."""
        if self._catalog is None:
            return dict(entry.labels)
        found: dict[str, int | None] = {}
        for label in entry.labels:
            found[label] = await self._catalog.label_version(entry.name, label)
        return found

    async def signature(self, target: Target) -> ModelSignature | None:
        """A version's signature from TF Serving's metadata (in-process: None, no lane holds it)."""
        if self._catalog is None or target.version is None:
            return None
        return await self._catalog.signature(target.model, target.version)

    async def label_target(self, entry: ModelEntry, label: str) -> Target:
        """In-process: the version the label names; TF Serving: the label, once checked."""
        known = sorted(entry.labels)
        if self._catalog is None:
            version = entry.labels.get(label)
            if version is None:
                raise UnknownVersion(
                    f"Model {entry.name!r} has no version label {label!r}; "
                    f"its labels: {', '.join(known) or 'none'}."
                )
            return Target(entry.name, version=version)
        if self._from_config_file and label not in entry.labels:
            raise UnknownVersion(
                f"Model {entry.name!r} has no version label {label!r}; "
                f"its labels: {', '.join(known) or 'none'}."
            )
        if await self._catalog.label_version(entry.name, label) is None:
            if self._from_config_file:
                # Configured, but TF Serving has not applied it yet (still loading, or
                # the file was refused): a wait, not a mistake in the request.
                raise BackendUnavailable(
                    f"TF Serving does not resolve label {label!r} of {entry.name!r} yet."
                )
            raise UnknownVersion(f"TF Serving has no version label {label!r} for {entry.name!r}.")
        return Target(entry.name, label=label)

    async def check_version(self, entry: ModelEntry, version: int) -> None:
        """Return if `version` is served now; 404 naming those that are, 503 while it loads."""
        if self._catalog is None:
            served = self.served_here(entry)
            if version not in served:
                raise UnknownVersion(_no_such_version(entry.name, version, served))
            return
        listed = await self._catalog.versions(entry.name, max_age=LISTING_TTL_SECONDS)
        states = {item.version: item.state for item in listed}
        available = [item.version for item in listed if item.state == "AVAILABLE"]
        if version not in states or states[version] == "END":
            raise UnknownVersion(_no_such_version(entry.name, version, available))
        if states[version] != "AVAILABLE":
            raise BackendUnavailable(f"{entry.name} version {version} is {states[version]}")

    def served_here(self, entry: ModelEntry) -> list[int]:
        """What `entry` serves in-process, highest first: the folders its policy serves, and,
        until requests naming no version are answered by one of those, the versions its
        lanes still answer with.

        TF Serving's availability-preserving loads keep a version serving until a version
        the policy wants is AVAILABLE in its place; only versions still on disk are kept,
        since a request naming one may need to load it into a lane of its own.
        """
        try:
            folders = version_folders(entry.path)
        except FileNotFoundError:
            return []
        wanted = set(entry.policy.served(folders))
        lanes = [lane for lane in self._lanes() if lane.target.model == entry.name]
        answering = {
            version for lane in lanes if (version := lane.backend.served_version()) is not None
        }
        if self._default_answer(lanes, answering) & wanted:
            return sorted(wanted, reverse=True)
        return sorted(wanted | (answering & set(folders)), reverse=True)

    @staticmethod
    def _default_answer(lanes: list[Lane], answering: set[int]) -> set[int]:
        """The version(s) answering a request that names only the model: its lanes naming no
        version (MODEL_NAME's default lane) when it has one, else its highest lane's."""
        following = [
            version
            for lane in lanes
            if lane.target.version is None and lane.target.label is None
            if (version := lane.backend.served_version()) is not None
        ]
        if following:
            return set(following)
        return {max(answering)} if answering else set()

    @staticmethod
    async def _failed_loads(entry: ModelEntry, lanes: Iterable[Lane]) -> dict[int, str]:
        """Versions a lane of `entry` tried and failed to load, with its reason."""
        failed: dict[int, str] = {}
        for lane in lanes:
            if lane.target.model != entry.name:
                continue
            document = (await lane.backend.status()).document or {}
            for item in document.get("model_version_status", []):
                if item.get("state") == "END" and item.get("status", {}).get("error_message"):
                    failed[int(item["version"])] = item["status"]["error_message"]
        return failed

    async def now(self, entry: ModelEntry) -> tuple[set[int], set[int]] | None:
        """(AVAILABLE versions, versions not yet END) of `entry`; None when it cannot be known."""
        if self._catalog is None:
            served = set(self.served_here(entry))
            return served, served
        try:
            listed = await self._catalog.versions(entry.name)
        except BackendUnavailable:
            return None  # TF Serving unreachable says nothing about what it serves
        available = {item.version for item in listed if item.state == "AVAILABLE"}
        return available, {item.version for item in listed if item.state != "END"}


def _no_such_version(model: str, version: int, served: list[int]) -> str:
    listing = ", ".join(str(v) for v in sorted(served)) or "none"
    return f"Model {model!r} has no version {version} served; served versions: {listing}."
