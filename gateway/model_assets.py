"""What travels with a model version besides the graph: its labels and where its weights came from.

Read from `<MODEL_BASE_PATH>/<MODEL_NAME>/<version>/assets.extra/` (see
docs/model-contract.md). TF Serving does not serve these files, so the
gateway reads them from the same folder, mounted read-only in compose.
"""

import json
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelAssets:
    """Labels and provenance of one version; empty when the folder is not reachable."""

    labels: tuple[str, ...] = ()
    export_info: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool | None:
        """True for real weights, False for untrained ones, None when unknown."""
        value = self.export_info.get("trained")
        return value if isinstance(value, bool) else None

    @property
    def weights(self) -> str:
        """A one-word description users cannot misread."""
        return {True: "trained", False: "untrained", None: "unknown"}[self.trained]

    @property
    def warning(self) -> str | None:
        """A sentence for responses when the predictions mean nothing."""
        if self.trained is False:
            return (
                "This model version has UNTRAINED weights (exported with --source "
                f"{self.export_info.get('source', 'random')}): its predictions are meaningless. "
                "Export real weights with `python export_model.py` (TF Hub) or, offline, "
                "`python export_model.py --source efficientnet-lite0`."
            )
        return None


@cache
def load_assets(model_dir: Path, version: int) -> ModelAssets:
    """Read a version's assets once; a version's files never change after export."""
    extra = model_dir / str(version) / "assets.extra"
    return ModelAssets(labels=_read_labels(extra / "labels.txt"), export_info=_read_info(extra))


def _read_labels(path: Path) -> tuple[str, ...]:
    try:
        return tuple(path.read_text(encoding="utf-8").splitlines())
    except OSError as exc:
        logger.warning("no label file for this version (%s); using class_N names", exc.strerror)
        return ()


def _read_info(extra: Path) -> dict[str, Any]:
    try:
        info = json.loads((extra / "export_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("no readable export_info.json for this version: %s", exc)
        return {}
    return info if isinstance(info, dict) else {}
