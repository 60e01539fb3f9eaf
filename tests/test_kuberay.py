"""``placement kuberay``: the RayCluster manifest, checked against KubeRay's own CRD schema.

No Ray and no Kubernetes here: the manifest is parsed with pyyaml and validated against the part
of the RayCluster CRD (KubeRay v1.7.0) vendored in tests/data, by the small validator below.
"""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from placement.cli import main as cli_main
from placement.kuberay import (
    GROUP_LABEL,
    K8S_ZONE_LABEL,
    ZONE_LABEL,
    raycluster_manifest,
    render,
    split_workers,
    to_yaml,
)

REPO = Path(__file__).resolve().parent.parent
CRD_FILE = Path(__file__).parent / "data" / "raycluster_crd_v1.7.0.yaml"
SCHEMA: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())

# Kubernetes' own syntax rules (apimachinery validation), written out again here so the test does
# not trust the module's copies.
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def crd_errors(value: object, schema: dict[str, Any], path: str = "$") -> list[str]:
    """What a structural OpenAPI v3 schema (as a CRD holds it) refuses in ``value``: unknown
    fields, wrong types, missing required fields, values outside an enum or pattern, int32
    overflow, and duplicate keys in list-type maps. Empty when ``value`` is valid."""
    errors: list[str] = []
    if schema.get("x-kubernetes-int-or-string"):
        if not (_TYPES["integer"](value) or isinstance(value, str)):
            return [f"{path}: {value!r} is neither an integer nor a string"]
    elif "anyOf" in schema and all(crd_errors(value, b, path) for b in schema["anyOf"]):
        return [f"{path}: {value!r} matches none of {schema['anyOf']}"]
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return [f"{path}: expected {kind}, got {type(value).__name__} {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if schema.get("format") == "int32" and _TYPES["integer"](value):
        if not -(2**31) <= value < 2**31:
            errors.append(f"{path}: {value} is out of int32 range")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        open_ = extra is True or schema.get("x-kubernetes-preserve-unknown-fields", False)
        errors += [f"{path}: missing required field {name!r}"
                   for name in schema.get("required", []) if name not in value]
        for key, item in value.items():
            if key in props:
                errors += crd_errors(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                errors += crd_errors(item, extra, f"{path}.{key}")
            elif not open_:
                errors.append(f"{path}.{key}: unknown field (not in the CRD schema)")
    if isinstance(value, list):
        for i, item in enumerate(value):
            errors += crd_errors(item, schema.get("items", {}), f"{path}[{i}]")
        if schema.get("x-kubernetes-list-type") == "map":
            item_props = schema["items"].get("properties", {})
            seen = set()
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    key = tuple(item.get(k, item_props.get(k, {}).get("default"))
                                for k in schema["x-kubernetes-list-map-keys"])
                    if key in seen:
                        errors.append(f"{path}[{i}]: duplicate list-map key {key}")
                    seen.add(key)
    return errors


def raycluster_errors(doc: dict[str, Any]) -> list[str]:
    """``crd_errors`` for a whole RayCluster. The CRD leaves root ``metadata`` open (the API
    server checks ObjectMeta itself), so its keys and KubeRay's name rule are checked here."""
    errors = crd_errors({**doc, "metadata": {}}, SCHEMA)
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return errors + ["$.metadata: expected object"]
    errors += [f"$.metadata.{key}: not checked by this test" for key in meta
               if key not in ("name", "namespace")]
    name = meta.get("name", "")
    if not (isinstance(name, str) and len(name) <= 53 and DNS1035.fullmatch(name)):
        errors.append(f"$.metadata.name: {name!r} is not a DNS-1035 label of <= 53 characters")
    if (doc.get("apiVersion"), doc.get("kind")) != ("ray.io/v1", "RayCluster"):
        errors.append("$: not a ray.io/v1 RayCluster")
    return errors


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["spec"]["containers"]]


CONFIGS = [
    {"workers": 1},
    {"workers": 4, "zones": ["a", "b"]},
    {"workers": 7, "zones": ["us-east-1a", "us-east-1b", "us-east-1c"], "name": "prod-ray"},
    {"workers": 3, "zones": ["Zone_A.1"], "cpus_per_worker": 8, "memory_per_worker": "30Gi",
     "image": "rayproject/ray:2.60.0-py311", "secret": "shared.ray-token"},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_manifest_parses_as_yaml_and_fits_the_raycluster_crd(config):
    manifest = raycluster_manifest(**config)
    text = render(manifest)
    assert yaml.safe_load(text) == manifest          # the comments are only comments
    assert yaml.safe_load(to_yaml(manifest)) == manifest
    assert raycluster_errors(yaml.safe_load(text)) == []
    assert render(raycluster_manifest(**config)) == text  # deterministic


MUTATIONS = [
    ("misspelt field", lambda d: d["spec"]["workerGroupSpecs"][0].update(replica=1),
     "$.spec.workerGroupSpecs[0].replica: unknown field"),
    ("misspelt top field", lambda d: d["spec"].update(workerGroupSpec=[]),
     "$.spec.workerGroupSpec: unknown field"),
    ("misspelt head field", lambda d: d["spec"]["headGroupSpec"].update(rayStartParam={}),
     "$.spec.headGroupSpec.rayStartParam: unknown field"),
    ("misspelt container field", lambda d: containers(d)[1].update(resource={}),
     "$.spec.workerGroupSpecs[0].template.spec.containers[0].resource: unknown field"),
    ("string for an integer", lambda d: d["spec"]["workerGroupSpecs"][0].update(replicas="2"),
     "replicas: expected integer"),
    ("integer for a string", lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update(
        {"num-cpus": 0}), "rayStartParams.num-cpus: expected string"),
    ("missing required field", lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"),
     "missing required field 'groupName'"),
    ("value outside the enum", lambda d: d["spec"]["authOptions"].update(mode="tokens"),
     "$.spec.authOptions.mode: 'tokens' is not one of"),
    ("bad quantity", lambda d: containers(d)[0]["resources"]["limits"].update(memory="4 GB"),
     "limits.memory: '4 GB' does not match"),
    ("int32 overflow", lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas=2**31),
     "out of int32 range"),
    ("two containers with one name", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"][
        "containers"].append(copy.deepcopy(containers(d)[0])), "duplicate list-map key"),
    ("bad cluster name", lambda d: d["metadata"].update(name="Ray_Cluster"),
     "is not a DNS-1035 label"),
]


@pytest.mark.parametrize("mutate, error", [(m, e) for _, m, e in MUTATIONS],
                         ids=[name for name, _, _ in MUTATIONS])
def test_the_validator_refuses_what_the_crd_refuses(mutate, error):
    manifest = raycluster_manifest(workers=2, zones=["a"])
    mutate(manifest)
    errors = raycluster_errors(manifest)
    assert any(error in e for e in errors), errors


@pytest.mark.parametrize("workers, zones, split", [
    (1, [], [1]), (4, ["a", "b"], [2, 2]), (5, ["a", "b"], [3, 2]), (7, ["a", "b", "c"], [3, 2, 2]),
    (3, ["a", "b", "c"], [1, 1, 1]), (8, ["a", "b", "c"], [3, 3, 2]),
])
def test_workers_split_evenly_with_the_remainder_to_the_first_zones(workers, zones, split):
    groups = raycluster_manifest(workers=workers, zones=zones)["spec"]["workerGroupSpecs"]
    assert [g["replicas"] for g in groups] == split
    # fixed size: KubeRay neither grows nor shrinks a group
    assert all(g["minReplicas"] == g["replicas"] == g["maxReplicas"] for g in groups)


@given(st.integers(1, 500), st.integers(1, 20))
def test_a_split_keeps_every_worker_and_differs_by_at_most_one(workers, zone_count):
    zones = [f"z{i}" for i in range(min(zone_count, workers))]
    split = split_workers(workers, zones)
    assert sum(split) == workers and min(split) >= 1 and max(split) - min(split) <= 1
    assert split == sorted(split, reverse=True)


def test_each_zone_group_carries_its_zone_and_group_labels_and_runs_in_that_zone():
    manifest = raycluster_manifest(workers=5, zones=["us-east-1a", "us-east-1b"])
    groups = manifest["spec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["workers-us-east-1a", "workers-us-east-1b"]
    for group, zone in zip(groups, ["us-east-1a", "us-east-1b"], strict=True):
        assert group["labels"] == {ZONE_LABEL: zone, GROUP_LABEL: group["groupName"]}
        assert group["template"]["spec"]["nodeSelector"] == {K8S_ZONE_LABEL: zone}
        # KubeRay v1.7 refuses labels in rayStartParams; Ray's autoscaler ignores them there
        assert "labels" not in group["rayStartParams"]
        assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in group["labels"].values())
    head = manifest["spec"]["headGroupSpec"]
    assert head["rayStartParams"] == {"num-cpus": "0"}   # no CPU work beside the GCS
    assert "labels" not in head


def test_without_zones_one_group_is_labelled_and_pinned_to_no_zone():
    (group,) = raycluster_manifest(workers=3)["spec"]["workerGroupSpecs"]
    assert group["groupName"] == "workers" and group["replicas"] == 3
    assert group["labels"] == {GROUP_LABEL: "workers"}
    assert "nodeSelector" not in group["template"]["spec"]


def test_zone_names_are_folded_into_valid_group_names():
    groups = raycluster_manifest(workers=2, zones=["Zone_A", "b.2"])["spec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["workers-zone-a", "workers-b-2"]
    assert all(DNS1123_LABEL.fullmatch(g["groupName"]) for g in groups)  # as KubeRay wants them
    assert groups[0]["labels"][ZONE_LABEL] == "Zone_A"     # the label keeps the zone as given


@pytest.mark.parametrize("secret", [None, "team-ray-token"])
def test_the_token_comes_from_a_secret_and_is_never_in_the_manifest(secret):
    manifest = raycluster_manifest("demo", workers=2, zones=["a"], secret=secret)
    name = secret or "demo-ray-token"
    assert manifest["spec"]["authOptions"] == {"mode": "token", "secretName": name}
    assert manifest["spec"]["rayVersion"] >= "2.52"       # KubeRay's minimum for token auth
    for container in containers(manifest):
        # KubeRay sets RAY_AUTH_TOKEN from the Secret itself; nothing here may carry a value
        assert not any(e["name"].startswith("RAY_AUTH") and "value" in e
                       for e in container.get("env", []))
    text = render(manifest)
    assert f"kubectl create secret generic {name} \\" in text
    assert "--from-literal=auth_token=" in text and "secrets.token_hex(32)" in text
    assert not re.search(r"[0-9a-f]{32}", text)           # no token anywhere in the output
    lines = text.splitlines()
    first = lines.index("apiVersion: ray.io/v1")      # the comments, then the document
    assert first > 0 and all(line.startswith("#") for line in lines[:first])
    assert not any(line.startswith("#") for line in lines[first:])


@pytest.mark.parametrize("kwargs, error, fix", [
    ({"workers": 0}, ValueError, "workers must be from 1"),
    ({"workers": 2**31}, ValueError, "workers must be from 1"),
    ({"workers": "4"}, TypeError, "workers must be a whole number"),
    ({"workers": 2, "zones": ["a", "b", "c"]}, ValueError,
     "3 zones need at least 3 workers (one per zone), got 2: ask for --workers 3 or more"),
    ({"workers": 2, "zones": ["a", "a"]}, ValueError, "zone 'a' is named twice"),
    ({"workers": 2, "zones": ["-a"]}, ValueError, "is not a Kubernetes label value"),
    ({"workers": 2, "zones": ["a b"]}, ValueError, "e.g. us-east-1a,us-east-1b"),
    ({"workers": 2, "zones": [""]}, ValueError, "is not a Kubernetes label value"),
    ({"workers": 2, "zones": ["z" * 64]}, ValueError, "at most 63"),
    ({"workers": 2, "zones": ["z" * 56]}, ValueError, "zone names of at most 55 characters"),
    ({"workers": 2, "zones": ["a.b", "a-b"]}, ValueError, "differ in more than case"),
    ({"name": "My_Cluster"}, ValueError, "e.g. ray-placement"),
    ({"name": "1ray"}, ValueError, "starting with a letter"),
    ({"name": "r" * 54}, ValueError, "at most 53"),
    ({"cpus_per_worker": 0}, ValueError, "at least 1"),
    ({"memory_per_worker": "0Gi"}, ValueError, "e.g. 4Gi or 512Mi"),
    ({"memory_per_worker": "4GB"}, ValueError, "positive Kubernetes quantity"),
    ({"image": ""}, ValueError, "e.g. rayproject/ray:2.60.0-py311"),
    ({"image": "ray project"}, ValueError, "not a container image reference"),
    ({"secret": "Bad_Secret"}, ValueError, "e.g. placement-ray-token"),
])
def test_bad_input_is_refused_with_the_fix(kwargs, error, fix):
    with pytest.raises(error) as refusal:
        raycluster_manifest(**{"workers": 1, **kwargs})
    assert fix in str(refusal.value)


def test_the_cli_prints_a_valid_manifest(capsys):
    assert cli_main(["kuberay", "--workers", "4", "--zones", "a,b"]) == 0
    out, err = capsys.readouterr()
    manifest = yaml.safe_load(out)
    assert raycluster_errors(manifest) == [] and err == ""
    assert manifest == raycluster_manifest(workers=4, zones=["a", "b"])


def test_the_cli_passes_every_option_on(capsys):
    argv = ["kuberay", "--workers", "3", "--zones", "x,y,z", "--name", "team", "--cpus", "4",
            "--memory", "16Gi", "--image", "rayproject/ray:2.60.0-py311", "--secret", "team-tok"]
    assert cli_main(argv) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest == raycluster_manifest("team", 3, ["x", "y", "z"], 4, "16Gi",
                                           "rayproject/ray:2.60.0-py311", "team-tok")


@pytest.mark.parametrize("argv, message", [
    (["kuberay"], "the following arguments are required: --workers"),
    (["kuberay", "--workers", "0"], "--workers must be >= 1"),
    (["kuberay", "--workers", " 4"], "--workers must be a whole number >= 1, in digits only"),
    (["kuberay", "--workers", "4", "--zones", "a,,b"], "argument --zones: zone '' is not"),
    (["kuberay", "--workers", "4", "--zones", "a,a"], "zone 'a' is named twice"),
    (["kuberay", "--workers", "1", "--zones", "a,b"], "2 zones need at least 2 workers"),
    (["kuberay", "--workers", "1", "--name", "Bad_Name"], "argument --name: cluster name"),
    (["kuberay", "--workers", "1", "--cpus", "0"], "--cpus must be >= 1"),
    (["kuberay", "--workers", "1", "--memory", "4GB"], "argument --memory: memory '4GB'"),
    (["kuberay", "--workers", "1", "--secret", "A"], "argument --secret: secret name 'A'"),
])
def test_the_cli_refuses_bad_input_with_status_2_and_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and message in err and out == ""


def test_the_command_runs_end_to_end_without_ray_or_pyyaml():
    done = subprocess.run(
        [sys.executable, "-m", "placement.cli", "kuberay", "--workers", "2", "--zones", "a"],
        capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert raycluster_errors(yaml.safe_load(done.stdout)) == []
    # the module is pure: neither Ray nor pyyaml (not a dependency) is imported to write it
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, placement.cli, placement.kuberay; "
         "print(sorted({'ray', 'yaml'} & set(sys.modules)))"],
        capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
    assert probe.stdout.strip() == "[]", probe.stderr


_SCALARS = st.one_of(st.text(), st.integers(), st.booleans())
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _TREES, max_size=5))
def test_to_yaml_round_trips_any_tree_of_strings_numbers_and_booleans(doc):
    assert yaml.safe_load(to_yaml(doc)) == (doc or None)  # an empty document loads as None


@pytest.mark.parametrize("word", ["yes", "No", "on", "OFF", "y", "n", "true", "null", "~", "1",
                                  "1.5", "0x1f", "1e3", "", " a", "a: b", "#c", "- a", "12:30"])
def test_to_yaml_quotes_strings_yaml_would_read_as_something_else(word):
    assert yaml.safe_load(to_yaml({word: word})) == {word: word}
