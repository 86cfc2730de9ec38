"""Which versions of a model are wanted: the `model_version_policy` of a ModelConfig.

Follows TFS/sources/storage_path/file_system_storage_path_source.cc
(`AspireLatestVersions`, `AspireAllVersions`, `AspireSpecificVersions`) and
TFS/config/file_system_storage_path_source.proto. Reference:
docs/tf-serving-protocol.md §14.2.

- No policy, or `latest {}`: the N highest versions on disk, N =
  `num_versions`; 0 counts as 1 (`std::max(num_versions, 1U)`).
- `all {}`: every version on disk.
- `specific { versions: ... }`: the listed versions that exist on disk; a
  listed version missing from disk is logged ("... was not found in the file
  system"); an empty list is logged ("No specific versions requested ...") and
  wants nothing, so everything loaded is unloaded.
Which of the wanted versions load first, and when unwanted ones go, is the
registry's business (AvailabilityPreservingPolicy, registry.py).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from tensorflow_serving.config.file_system_storage_path_source_pb2 import (
    FileSystemStoragePathSourceConfig,
)

log = logging.getLogger("tfserving_double")


@dataclass(frozen=True)
class VersionPolicy:
    """One model's version policy, read from its ModelConfig."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    @classmethod
    def from_proto(
        cls, proto: FileSystemStoragePathSourceConfig.ServableVersionPolicy
    ) -> VersionPolicy:
        """Read a ServableVersionPolicy; an unset choice is `latest` with one version."""
        choice = proto.WhichOneof("policy_choice")
        if choice == "all":
            return cls("all")
        if choice == "specific":
            return cls("specific", versions=frozenset(proto.specific.versions))
        return cls("latest", num_versions=max(proto.latest.num_versions, 1))

    def aspired(self, model_name: str, on_disk: Collection[int]) -> set[int]:
        """The versions this policy wants among those found on disk."""
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "latest":
            return set(sorted(on_disk, reverse=True)[: self.num_versions])
        if not self.versions:
            log.warning("No specific versions requested for servable %s.", model_name)
            return set()
        for version in sorted(self.versions - set(on_disk)):
            log.warning(
                "Version %d of servable %s, which was requested to be served as a 'specific' "
                "version in the servable's version policy, was not found in the file system",
                version,
                model_name,
            )
        return set(self.versions & set(on_disk))

    def describe(self) -> str:
        """A short text for logs: `latest(2)`, `all`, `specific[1, 3]`."""
        if self.kind == "latest":
            return f"latest({self.num_versions})"
        if self.kind == "specific":
            return f"specific{sorted(self.versions)}"
        return "all"
