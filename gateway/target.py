"""What a prediction asks for: a model, and optionally one version or one version label."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A model, a version of it, or the version a label names (never both)."""

    model: str
    version: int | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label is not None:
            raise ValueError("a target names a version or a label, not both")

    def describe(self) -> str:
        """`mobilenet version 3`, `mobilenet label 'canary'` or `mobilenet`, for messages."""
        if self.version is not None:
            return f"{self.model} version {self.version}"
        if self.label is not None:
            return f"{self.model} label {self.label!r}"
        return self.model
