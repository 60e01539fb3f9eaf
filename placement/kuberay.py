"""KubeRay RayCluster manifests: what ``placement kuberay --workers 4 --zones a,b`` prints.

Pure: plain dicts, written out as YAML by the small emitter below (no Ray, no Kubernetes client,
no pyyaml, which is not a dependency). The manifest targets the ``ray.io/v1`` RayCluster of
KubeRay v1.6 or later and is checked against the v1.7.0 CRD schema (tests/data):

- one worker group per zone, carrying Ray node labels ``ray.io/availability-zone`` and
  ``ray.io/node-group`` in the group's top-level ``labels`` field (KubeRay v1.7 refuses
  ``rayStartParams['labels']``, and Ray's autoscaler reads group labels from that field only),
  and a ``nodeSelector`` on ``topology.kubernetes.io/zone``, so the label says where the pod runs;
- token auth through ``authOptions`` (mode ``token``, ``secretName``): KubeRay sets
  ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` from the Secret's ``auth_token`` key on every
  Ray container it runs. The token never appears in the manifest: the user creates the Secret;
- a head that starts with ``num-cpus: 0``, so no task or actor that asks for a CPU runs beside
  the GCS and dashboard.

>>> doc = raycluster_manifest("demo", workers=3, zones=["a", "b"])
>>> [(g["groupName"], g["replicas"]) for g in doc["spec"]["workerGroupSpecs"]]
[('workers-a', 2), ('workers-b', 1)]
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

RAY_VERSION = "2.60.0"  # the Ray this toolkit is tested with; KubeRay needs >= 2.52 for tokens
DEFAULT_IMAGE = f"rayproject/ray:{RAY_VERSION}"
DEFAULT_NAME = "placement"
DEFAULT_CPUS = 2
DEFAULT_MEMORY = "4Gi"
HEAD_CPUS, HEAD_MEMORY = "1", "4Gi"  # room for the GCS and dashboard; Ray sees 0 CPUs there
ZONE_LABEL = "ray.io/availability-zone"  # Ray's well-known keys (ray._raylet.RAY_NODE_*_KEY)
GROUP_LABEL = "ray.io/node-group"
K8S_ZONE_LABEL = "topology.kubernetes.io/zone"  # the zone Kubernetes puts on each node
TOKEN_KEY = "auth_token"  # the Secret key KubeRay reads (utils.RAY_AUTH_TOKEN_SECRET_KEY)
MAX_NAME = 53  # KubeRay's MaxRayClusterNameLength: longer names are refused by the operator
MAX_REPLICAS = 2**31 - 1  # the CRD's replica counts are int32
_GROUP_PREFIX = "workers"

_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_QUANTITY = re.compile(r"(?P<number>[0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def check_name(name: str) -> str:
    """The RayCluster name, if KubeRay accepts it: a DNS-1035 label of at most 53 characters.

    >>> check_name("ray-placement")
    'ray-placement'
    """
    if len(name) > MAX_NAME or not _DNS1035.fullmatch(name):
        raise ValueError(
            f"cluster name {name!r} is not one KubeRay accepts: use at most {MAX_NAME} lower-case "
            "letters, digits and '-', starting with a letter and ending with a letter or digit, "
            "e.g. ray-placement"
        )
    return name


def parse_zones(text: str) -> list[str]:
    """Comma-separated zone names (``--zones``), checked by ``check_zones``.

    >>> parse_zones("us-east-1a,us-east-1b")
    ['us-east-1a', 'us-east-1b']
    """
    return check_zones(text.split(","))


def check_zones(zones: Sequence[str]) -> list[str]:
    """Zone names, each a valid Kubernetes label value (the value of the zone labels), none
    twice."""
    zones = list(zones)
    for zone in zones:
        if len(zone) > 63 or not _LABEL_VALUE.fullmatch(zone):
            raise ValueError(
                f"zone {zone!r} is not a Kubernetes label value: use at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit, comma-separated "
                "without spaces, e.g. us-east-1a,us-east-1b"
            )
    twice = sorted({zone for zone in zones if zones.count(zone) > 1})
    if twice:
        raise ValueError(f"zone {twice[0]!r} is named twice: name each zone once")
    return zones


def check_memory(quantity: str) -> str:
    """A positive Kubernetes memory quantity such as ``4Gi``.

    >>> check_memory("512Mi")
    '512Mi'
    """
    match = _QUANTITY.fullmatch(quantity)
    if not match or float(match["number"]) <= 0:
        raise ValueError(
            f"memory {quantity!r} is not a positive Kubernetes quantity: e.g. 4Gi or 512Mi"
        )
    return quantity


def check_image(image: str) -> str:
    """A container image reference: not empty, no spaces or control characters."""
    if not image or any(ch.isspace() or not ch.isprintable() for ch in image):
        raise ValueError(
            f"image {image!r} is not a container image reference: e.g. {DEFAULT_IMAGE}-py311"
        )
    return image


def check_secret(secret: str) -> str:
    """A Secret name Kubernetes accepts: a DNS-1123 subdomain (at most 253 characters)."""
    if len(secret) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(secret):
        raise ValueError(
            f"secret name {secret!r} is not one Kubernetes accepts: use lower-case letters, "
            "digits, '-' and '.', starting and ending with a letter or digit, "
            "e.g. placement-ray-token"
        )
    return secret


def default_secret(name: str) -> str:
    """The Secret holding the cluster's token unless one is named: ``<name>-ray-token``."""
    return f"{name}-ray-token"


def split_workers(workers: int, zones: Sequence[str]) -> list[int]:
    """Workers per zone: an even split, the remainder to the first zones.

    >>> split_workers(5, ["a", "b", "c"])
    [2, 2, 1]
    """
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be a whole number, got {workers!r}")
    if not 1 <= workers <= MAX_REPLICAS:
        raise ValueError(f"workers must be from 1 to {MAX_REPLICAS}, got {workers}: e.g. 4")
    if len(zones) > workers:
        raise ValueError(
            f"{len(zones)} zones need at least {len(zones)} workers (one per zone), got "
            f"{workers}: ask for --workers {len(zones)} or more, or name fewer zones"
        )
    if not zones:
        return [workers]
    share, extra = divmod(workers, len(zones))
    return [share + (i < extra) for i in range(len(zones))]


def group_names(zones: Sequence[str]) -> list[str]:
    """Worker group names: ``workers`` alone, or ``workers-<zone>`` per zone.

    KubeRay puts the group name in pod names (no '_'), wants it a DNS-1123 label wherever it names
    other objects (NetworkPolicies), and sets it as the ``ray.io/group`` pod label (at most 63
    characters): so the zone is folded to lower case, with '-' for '_' and '.'.

    >>> group_names(["us-east-1a", "Zone_B"])
    ['workers-us-east-1a', 'workers-zone-b']
    """
    if not zones:
        return [_GROUP_PREFIX]
    names = [f"{_GROUP_PREFIX}-{re.sub('[_.]', '-', zone.lower())}" for zone in zones]
    for zone, group in zip(zones, names, strict=True):
        if len(group) > 63:
            raise ValueError(f"zone {zone!r} is too long for a worker group name "
                             f"({group!r}): use zone names of at most 55 characters")
        first = names.index(group)
        if zones[first] != zone:
            raise ValueError(f"zones {zones[first]!r} and {zone!r} both make worker group "
                             f"{group!r}: name zones that differ in more than case, '.' and '_'")
    return names


def _container(name: str, image: str, cpus: str, memory: str) -> dict[str, Any]:
    # requests == limits: KubeRay derives Ray's num-cpus and memory from the limits.
    amounts = {"cpu": cpus, "memory": memory}
    return {"name": name, "image": image,
            "resources": {"limits": dict(amounts), "requests": dict(amounts)}}


def raycluster_manifest(
    name: str = DEFAULT_NAME,
    workers: int = 1,
    zones: Sequence[str] = (),
    cpus_per_worker: int = DEFAULT_CPUS,
    memory_per_worker: str = DEFAULT_MEMORY,
    image: str = DEFAULT_IMAGE,
    secret: str | None = None,
) -> dict[str, Any]:
    """A RayCluster: a head with no Ray CPUs and ``workers`` workers split over ``zones``.

    Each group is fixed in size (replicas = minReplicas = maxReplicas). ``secret`` names the
    Secret holding the token (default ``<name>-ray-token``); ``image`` must carry Ray 2.60.

    >>> doc = raycluster_manifest("demo", workers=2, zones=["us-east-1a"])
    >>> group = doc["spec"]["workerGroupSpecs"][0]
    >>> group["labels"]
    {'ray.io/availability-zone': 'us-east-1a', 'ray.io/node-group': 'workers-us-east-1a'}
    >>> doc["spec"]["authOptions"]
    {'mode': 'token', 'secretName': 'demo-ray-token'}
    """
    check_name(name)
    zones = check_zones(zones)
    counts = split_workers(workers, zones)
    groups = group_names(zones)
    if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, int):
        raise TypeError(f"cpus per worker must be a whole number, got {cpus_per_worker!r}")
    if cpus_per_worker < 1:
        raise ValueError(f"cpus per worker must be at least 1, got {cpus_per_worker}: e.g. 2")
    memory = check_memory(memory_per_worker)
    check_image(image)
    secret = check_secret(default_secret(name) if secret is None else secret)
    head = _container("ray-head", image, HEAD_CPUS, HEAD_MEMORY)
    head["ports"] = [{"containerPort": 6379, "name": "gcs-server"},
                     {"containerPort": 8265, "name": "dashboard"},
                     {"containerPort": 10001, "name": "client"}]
    worker_groups = []
    in_zone: list[str | None] = list(zones) or [None]
    for group, count, zone in zip(groups, counts, in_zone, strict=True):
        pod: dict[str, Any] = {}
        labels = {GROUP_LABEL: group}
        if zone is not None:
            labels = {ZONE_LABEL: zone, **labels}
            pod["nodeSelector"] = {K8S_ZONE_LABEL: zone}
        pod["containers"] = [_container("ray-worker", image, str(cpus_per_worker), memory)]
        worker_groups.append({
            "groupName": group, "replicas": count, "minReplicas": count, "maxReplicas": count,
            "labels": labels, "rayStartParams": {}, "template": {"spec": pod},
        })
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "rayVersion": RAY_VERSION,
            "authOptions": {"mode": "token", "secretName": secret},
            "headGroupSpec": {
                # 0 CPUs: work that needs a CPU stays off the node running the GCS.
                "rayStartParams": {"num-cpus": "0"},
                "template": {"spec": {"containers": [head]}},
            },
            "workerGroupSpecs": worker_groups,
        },
    }


def setup_commands(manifest: Mapping[str, Any]) -> list[str]:
    """Shell lines that create the token Secret, apply the manifest and give a driver the token.

    >>> setup_commands(raycluster_manifest("demo"))[0]
    'kubectl create secret generic demo-ray-token \\\\'
    """
    secret = manifest["spec"]["authOptions"]["secretName"]
    return [
        f"kubectl create secret generic {secret} \\",
        f"  --from-literal={TOKEN_KEY}=\"$(python3 -c 'import secrets; "
        "print(secrets.token_hex(32))')\"",
        "kubectl apply -f raycluster.yaml",
        "export RAY_AUTH_MODE=token",
        f"export RAY_AUTH_TOKEN=\"$(kubectl get secret {secret} "
        f"-o jsonpath='{{.data.{TOKEN_KEY}}}' | base64 -d)\"",
    ]


def render(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML, after comments saying what it holds and how to start it."""
    spec = manifest["spec"]
    lines = [
        f"RayCluster {manifest['metadata']['name']}, written by `placement kuberay` for KubeRay "
        f"v1.6+ and Ray {spec['rayVersion']}.",
        "Worker groups, fixed in size (the head has no Ray CPUs):",
        *(f"  {g['groupName']}: {g['replicas']} workers"
          + (f" in zone {g['labels'][ZONE_LABEL]}" if ZONE_LABEL in g["labels"] else "")
          for g in spec["workerGroupSpecs"]),
        "Token auth: the token lives in a Secret, never in this file. Create it first, then apply",
        "this file (saved as raycluster.yaml); a driver outside the cluster needs the same token:",
        *(f"  {line}" for line in setup_commands(manifest)),
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + to_yaml(manifest)


# YAML 1.1 reads these plain words as booleans or null: such strings are quoted.
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"}
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_LONG_KEY = 1000


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return _quote(value)
    raise TypeError(f"to_yaml writes str, int, bool, dicts and lists, not {type(value).__name__}")


def _quote(text: str) -> str:
    # Double-quoted, printable ASCII as is and every other character escaped: YAML refuses most
    # control characters raw, and \U keeps characters beyond U+FFFF whole (JSON would split them).
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _emit(node: Mapping[str, Any] | Sequence[Any], indent: str, out: list[str]) -> None:
    def block(value: object) -> bool:
        return isinstance(value, (Mapping, list)) and len(value) > 0

    if isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(f"to_yaml writes string keys only, not {key!r}")
            text = _scalar(key)
            if len(text) < _LONG_KEY:
                head = f"{indent}{text}:"
            else:  # YAML caps implicit keys at 1024 characters: write an explicit "? key"
                out.append(f"{indent}? {text}")
                head = f"{indent}:"
            if block(value):
                out.append(head)
                # a list sits at its key's indent (as kubectl writes it), a mapping one deeper
                _emit(value, indent if isinstance(value, list) else indent + "  ", out)
            else:
                out.append(f"{head} {_flat(value)}")
        return
    for item in node:
        if block(item):
            inner: list[str] = []
            _emit(item, indent + "  ", inner)
            out.append(f"{indent}- {inner[0][len(indent) + 2:]}")
            out.extend(inner[1:])
        else:
            out.append(f"{indent}- {_flat(item)}")


def _flat(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(doc: Mapping[str, Any]) -> str:
    """``doc`` as block-style YAML, keys in their dict order, strings quoted where YAML would
    read them as something else. Deterministic: the same dict always gives the same text.

    >>> print(to_yaml({"kind": "RayCluster", "spec": {"size": 2, "cpu": "2", "on": ["a"]}}), end="")
    kind: RayCluster
    spec:
      size: 2
      cpu: "2"
      "on":
      - a
    """
    out: list[str] = []
    _emit(doc, "", out)
    return "".join(line + "\n" for line in out)
