"""Rendering the Helm charts for the tests: Helm's own Go library through helm-python-sdk
(no helm binary), the values files merged the way ``helm install -f a -f b`` merges them."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

HELM = Path(__file__).resolve().parents[2] / "helm"
REGION_CHART = HELM / "konsil-region"
CONTROL_CHART = HELM / "konsil-control"
# The Kubernetes version the manifests are linted and validated for (a recent release
# whose schemas kubernetes-validate ships).
KUBE_VERSION = "1.34.0"


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, tables merged key by key and anything else replaced,
    as Helm merges ``-f`` files."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def values_of(*files: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for file in files:
        values = deep_merge(values, yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    return deep_merge(values, overrides or {})


@dataclass(frozen=True)
class Render:
    """One chart rendered with one set of values (``values``: the chart's defaults with
    them, as Helm coalesces them): every manifest parsed, and the text."""

    chart: str
    values: dict[str, Any]
    files: dict[str, str]
    objects: list[dict[str, Any]]

    @property
    def text(self) -> str:
        return "\n".join(self.files.values())

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found in {[kn(o) for o in self.objects]}"
        return found[0]

    def pod_specs(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod spec) of every workload."""
        for obj in self.objects:
            if obj["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
                yield obj, obj["spec"]["template"]["spec"]


def kn(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def render(chart: Path, values: dict[str, Any], release: str, namespace: str) -> Render:
    """The chart's manifests as ``helm install`` would send them (hooks included);
    raises helm's own error (HelmValuesError for the schema, HelmRenderError for ``fail``)."""
    with helm.Chart.load(chart) as loaded:
        files = loaded.render(values=values, name=release, namespace=namespace, is_install=True)
        effective = loaded.merge_values(values)
    manifests = {name: text for name, text in files.items() if not name.endswith("NOTES.txt")}
    objects = [
        doc
        for text in manifests.values()
        for doc in yaml.safe_load_all(text)
        if doc  # templates switched off render as empty documents
    ]
    return Render(chart.name, effective, manifests, objects)


def lint(chart: Path, values: dict[str, Any]) -> dict[str, Any]:
    """``helm lint --strict --kube-version`` of the chart with these values."""
    return helm.lint(chart, values, strict=True, namespace="konsil", kube_version=f"v{KUBE_VERSION}")
