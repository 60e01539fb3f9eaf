"""The ``placement`` command: local clusters, their status, and the demo.

    placement cluster start 4        # labelled local cluster node0..node3 on 127.0.0.10-13
    placement status [--json]        # nodes, labels, resources
    placement cluster stop           # ends exactly that cluster's processes
    placement cluster join HEAD:PORT --token-file F --labels zone=z1   # this host joins a cluster
    placement demo                   # every policy on a local cluster, checked
    placement kuberay --workers 4 --zones a,b   # a KubeRay RayCluster manifest (YAML) on stdout
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import ClusterNotFoundError, LocalClusterError, PlacementError
from .kuberay import (
    DEFAULT_CPUS,
    DEFAULT_IMAGE,
    DEFAULT_MEMORY,
    DEFAULT_NAME,
    K8S_ZONE_LABEL,
    check_image,
    check_memory,
    check_name,
    check_secret,
    parse_zones,
    raycluster_manifest,
    render,
)
from .local_cluster import (
    DEFAULT_FIRST_ADDRESS,
    DEFAULT_LABEL_AMOUNT,
    DEFAULT_OBJECT_STORE_MB,
    DEFAULT_PORT,
    DEFAULT_START_TIMEOUT,
    MAX_TIMEOUT_SECONDS,
    MIN_OBJECT_STORE_MB,
    ClusterSpec,
    default_state_dir,
    start_cluster,
    stop_cluster,
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Digits only: int() also takes " 4", "1_0" and non-ASCII digits, float() "nan", "inf", "1_0".
_WHOLE = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _node_count(text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"N must be a positive whole number of nodes, in digits only, got {text!r}: "
            "e.g. scripts/start_cluster.sh 4"
        )
    value = int(text, 10)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"N must be at least 1, got {value}: e.g. scripts/start_cluster.sh 4"
        )
    return value


def _whole(option: str, least: int, most: int | None = None,
           example: str = "") -> Callable[[str], int]:
    """A strict parser for a whole-number option: digits only, within [least, most]."""
    bounds = f">= {least}" if most is None else f"from {least} to {most}"

    def parse(text: str) -> int:
        if not _WHOLE.fullmatch(text):
            raise argparse.ArgumentTypeError(
                f"{option} must be a whole number {bounds}, in digits only, got {text!r}: "
                f"e.g. {option} {example}"
            )
        value = int(text, 10)
        if value < least or (most is not None and value > most):
            raise argparse.ArgumentTypeError(
                f"{option} must be {bounds}, got {value}: e.g. {option} {example}"
            )
        return value

    return parse


def _timeout(text: str) -> float:
    """Seconds to wait: a plain decimal number more than 0 and at most a day."""
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"--timeout must be a number of seconds more than 0 and at most "
            f"{MAX_TIMEOUT_SECONDS:.0f} (a day), got {text!r}: "
            f"e.g. --timeout {DEFAULT_START_TIMEOUT:.0f}"
        )
    return value


_PORT = _whole("--port", 1024, 65535, example=str(DEFAULT_PORT))


def _resources(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--resources must be JSON such as '{{\"accel\": 1}}', got {text!r}"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"--resources must be a JSON object such as '{{\"accel\": 1}}', got {text!r}"
        )
    return value


_T = TypeVar("_T")


def _checked(check: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from a validator whose ValueError names the fix: argparse then prints that
    message (a plain ValueError would only say "invalid value")."""

    def parse(text: str) -> _T:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=None,
        help="the cluster's state directory "
        f"(default $PLACEMENT_STATE_DIR or {default_state_dir()})",
    )


def _cmd_start(args: argparse.Namespace) -> int:
    spec = ClusterSpec(
        nodes=args.nodes,
        state_dir=args.state_dir or default_state_dir(),
        port=args.port,
        first_address=args.first_address,
        cpus_per_node=args.cpus,
        object_store_mb=args.object_store_mb,
        label_amount=args.label_amount,
        label_prefix=args.label_prefix,
        dashboard=args.dashboard,
        token_auth=not args.no_token_auth,
        extra_resources=args.resources,
    )
    if not spec.token_auth:
        _say("WARNING: token authentication is off: "
             "anyone who can reach these ports can run code as you")
    state = start_cluster(spec, timeout=args.timeout, say=_say)
    print(f"cluster of {len(state.nodes)} nodes is up at {state.address} "
          f"(started in {state.start_seconds:.1f}s)")
    print(f"state directory: {state.state_dir}")
    print(f"connect: {state.connect_line()}")
    print(f"stop:    scripts/stop_cluster.sh --state-dir {state.state_dir}")
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    from .local_cluster import add_node

    state = add_node(args.state_dir or default_state_dir(), timeout=args.timeout)
    added = state.nodes[-1]
    print(f"added {added['label']} at {added['address']}: the cluster has {len(state.nodes)} nodes")
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    from .join import LABEL_AUTO, LABEL_NONE, JoinSpec, default_join_dir, join_cluster

    spec = JoinSpec(
        head=args.head, token_file=args.token_file, state_dir=args.state_dir or default_join_dir(),
        labels=args.labels, node_ip_address=args.node_ip_address, cpus=args.cpus,
        object_store_mb=args.object_store_mb, resources=args.resources,
        label=LABEL_NONE if args.no_label else LABEL_AUTO, label_prefix=args.label_prefix,
        timeout=args.timeout,
    )
    node = join_cluster(spec, say=_say)
    own = {k: v for k, v in node.labels.items() if not k.startswith("ray.io/")}
    print(f"joined {node.state.address}: node {node.node_id} at {node.address}, "
          f"label {node.label or '(none: the cluster has no node<i> labels, or --no-label)'}")
    print(f"Ray labels: {','.join(f'{k}={v}' for k, v in own.items()) or '(none)'}")
    print(f"state directory: {node.state.state_dir}")
    print(f"status:  placement status --state-dir {node.state.state_dir}")
    print(f"stop:    {node.stop_command()}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    ended = stop_cluster(state_dir, keep_logs=args.keep_logs)
    if not ended:
        print(f"no cluster processes were running in {state_dir}")
    else:
        print(f"stopped {len(ended)} processes of the cluster in {state_dir}:")
        for line in ended:
            print(f"  {line}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .cluster import read_snapshot
    from .connect import connect
    from .status import status_table

    connect(args.address, state_dir=args.state_dir)
    snapshot = read_snapshot(label_prefix=args.label_prefix)
    if args.json:
        print(snapshot.to_json())
    else:
        print(status_table(snapshot))
        print(f"\n{len(snapshot.live)} alive, {len(snapshot.dead)} dead, "
              f"{len(snapshot.placeable)} labelled")
    return 0


def _cmd_pending(args: argparse.Namespace) -> int:
    from .connect import connect
    from .diagnosis import pending

    connect(args.address, state_dir=args.state_dir)
    waiting = pending()
    for explanation in waiting:
        print(explanation, end="\n\n")
    print(f"{len(waiting)} tasks and actors have not started")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(nodes=args.nodes, state_dir=args.state_dir, port=args.port, say=_say)


def _cmd_kuberay(args: argparse.Namespace) -> int:
    try:
        manifest = raycluster_manifest(
            args.name, args.workers, args.zones, args.cpus, args.memory, args.image, args.secret
        )
    except ValueError as exc:  # a rule across options, e.g. more zones than workers
        args.error(str(exc))  # usage and message, exit status 2, as for a bad single option
    else:
        print(render(manifest), end="")
    return 0


def _add_join(actions: Any) -> None:
    from .join import JOIN_ATTEMPTS, default_join_dir, parse_head, parse_labels

    join = actions.add_parser(
        "join", help="start a node on this host that joins a running cluster (real hosts)",
        description="Start a Ray node on this host that joins the cluster at HEAD_ADDRESS, with "
        "the next free node<i> label (its custom resource and the Ray label placement.node), and "
        "your Ray labels. Labelling follows the cluster: a node joining a cluster whose nodes "
        "carry node<i> labels gets the lowest free one; a node joining a cluster that has none "
        "(plain `ray start`) gets none, because one labelled node there changes nothing for "
        "backend='auto' (node ids while any node is unlabelled) and would be the only node "
        "backend='resource' could use. A host that finds another node holding its label "
        f"after its node started stops it and takes the next (at most {JOIN_ATTEMPTS} tries).")
    join.add_argument("head", type=_checked(parse_head), metavar="HEAD_ADDRESS",
                      help="the head's GCS address, host:port (e.g. 10.0.0.5:6379)")
    join.add_argument("--token-file", type=Path, required=True,
                      help="file holding the cluster's auth token, mode 600 (copied from the "
                      "head; it is passed to Ray through the environment, never the command line)")
    join.add_argument("--labels", type=_checked(parse_labels), default={},
                      help="Ray labels of this node, e.g. zone=z1,rack=r2 (Ray's label syntax; "
                      "ray.io/ keys and placement.node are refused)")
    join.add_argument("--no-label", action="store_true",
                      help="no node<i> label even on a labelled cluster: only your --labels "
                      "(policies then choose nodes by id)")
    join.add_argument("--node-ip-address", default=None,
                      help="this host's address as other hosts reach it (default: Ray finds it); "
                      "on one machine a loopback address of its own, e.g. 127.0.0.12")
    join.add_argument("--cpus", type=_whole("--cpus", 0, example="2"), default=None,
                      help="CPUs of this node (default: Ray counts them)")
    join.add_argument("--object-store-mb", default=None,
                      type=_whole("--object-store-mb", MIN_OBJECT_STORE_MB, example="256"),
                      help="object store in MiB (default: Ray's, 30%% of memory)")
    join.add_argument("--resources", type=_resources, default={},
                      help='extra custom resources of this node, as JSON, e.g. \'{"accel": 1}\'')
    join.add_argument("--label-prefix", default="node", help="label prefix (default node)")
    join.add_argument("--timeout", type=_timeout, default=DEFAULT_START_TIMEOUT,
                      help="seconds to wait for the node")
    join.add_argument("--state-dir", type=Path, default=None,
                      help=f"this node's own state directory (default {default_join_dir()}); "
                      "`placement cluster stop --state-dir` on it ends exactly this node")
    join.set_defaults(run=_cmd_join)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="placement", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    status = commands.add_parser("status", help="show the nodes of the cluster")
    _add_state_dir(status)
    status.add_argument("--address", default=None,
                        help="a Ray cluster address instead of the local cluster")
    status.add_argument("--json", action="store_true",
                        help="print the snapshot as JSON (loadable by ClusterSnapshot.from_json)")
    status.add_argument("--label-prefix", default="node",
                        help="prefix of node label resources (default node)")
    status.set_defaults(run=_cmd_status)

    waiting = commands.add_parser(
        "pending", help="every task and actor that has not started: what it asked, why it waits")
    _add_state_dir(waiting)
    waiting.add_argument("--address", default=None,
                         help="a Ray cluster address instead of the local cluster")
    waiting.set_defaults(run=_cmd_pending)

    cluster = commands.add_parser("cluster", help="start, stop or show a labelled local cluster")
    actions = cluster.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start N labelled nodes on loopback addresses")
    start.add_argument("nodes", type=_node_count, metavar="N", help="number of nodes")
    _add_state_dir(start)
    start.add_argument("--port", type=_PORT, default=DEFAULT_PORT,
                       help=f"head (GCS) port (default {DEFAULT_PORT})")
    start.add_argument("--first-address", default=DEFAULT_FIRST_ADDRESS,
                       help=f"address of node0 (default {DEFAULT_FIRST_ADDRESS})")
    start.add_argument("--cpus", type=_whole("--cpus", 0, example="2"), default=1,
                       help="CPUs per node (default 1)")
    start.add_argument("--object-store-mb", default=DEFAULT_OBJECT_STORE_MB,
                       type=_whole("--object-store-mb", MIN_OBJECT_STORE_MB, example="256"),
                       help=f"object store per node in MiB (default {DEFAULT_OBJECT_STORE_MB})")
    start.add_argument("--label-amount", default=DEFAULT_LABEL_AMOUNT,
                       type=_whole("--label-amount", 1, example=str(DEFAULT_LABEL_AMOUNT)),
                       help=f"amount of the node<i> resource per node "
                       f"(default {DEFAULT_LABEL_AMOUNT})")
    start.add_argument("--label-prefix", default="node", help="label prefix (default node)")
    start.add_argument("--resources", type=_resources, default={},
                       help='extra custom resources on every node, as JSON, e.g. \'{"accel": 1}\'')
    start.add_argument("--dashboard", action="store_true",
                       help="also start Ray's dashboard on 127.0.0.1:8265")
    start.add_argument("--no-token-auth", action="store_true",
                       help="turn token authentication off (not recommended)")
    start.add_argument("--timeout", type=_timeout, default=DEFAULT_START_TIMEOUT,
                       help="seconds to wait for all nodes")
    start.set_defaults(run=_cmd_start)
    add = actions.add_parser("add", help="start one more labelled node in the running cluster")
    _add_state_dir(add)
    add.add_argument("--timeout", type=_timeout, default=DEFAULT_START_TIMEOUT,
                     help="seconds to wait for the node")
    add.set_defaults(run=_cmd_add)
    _add_join(actions)
    stop = actions.add_parser("stop", help="end exactly the processes of the cluster")
    _add_state_dir(stop)
    stop.add_argument("--keep-logs", action="store_true",
                      help="keep Ray's logs under <state-dir>/ray")
    stop.set_defaults(run=_cmd_stop)
    show = actions.add_parser("status", help="same as `placement status`")
    _add_state_dir(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_cmd_status, address=None, label_prefix="node")

    demo = commands.add_parser(
        "demo", help="run every policy on a local cluster and check each promise"
    )
    demo.add_argument("--nodes", type=_node_count, default=4,
                      help="nodes of the cluster it starts when none runs (default 4)")
    _add_state_dir(demo)
    demo.add_argument("--port", type=_PORT, default=DEFAULT_PORT,
                      help="head port of the cluster it starts")
    demo.set_defaults(run=_cmd_demo)

    kuberay = commands.add_parser(
        "kuberay", help="print a KubeRay RayCluster manifest: zone-labelled workers, token auth"
    )
    kuberay.add_argument("--workers", type=_whole("--workers", 1, example="4"), required=True,
                         help="Ray worker pods, split evenly over the zones")
    kuberay.add_argument("--zones", type=_checked(parse_zones), default=[],
                         help=f"comma-separated Kubernetes zones (values of {K8S_ZONE_LABEL}), "
                         "one worker group each, e.g. us-east-1a,us-east-1b")
    kuberay.add_argument("--name", type=_checked(check_name), default=DEFAULT_NAME,
                         help=f"RayCluster name (default {DEFAULT_NAME})")
    kuberay.add_argument("--cpus", type=_whole("--cpus", 1, example=str(DEFAULT_CPUS)),
                         default=DEFAULT_CPUS, help=f"CPUs per worker pod (default {DEFAULT_CPUS})")
    kuberay.add_argument("--memory", type=_checked(check_memory), default=DEFAULT_MEMORY,
                         help=f"memory per worker pod (default {DEFAULT_MEMORY})")
    kuberay.add_argument("--image", type=_checked(check_image), default=DEFAULT_IMAGE,
                         help=f"Ray image, with Ray 2.60 (default {DEFAULT_IMAGE})")
    kuberay.add_argument("--secret", type=_checked(check_secret), default=None,
                         help="the Secret holding the token (default <name>-ray-token)")
    kuberay.set_defaults(run=_cmd_kuberay, error=kuberay.error)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)  # one of the _cmd_* functions, set by the subcommand
        return code
    except (LocalClusterError, ClusterNotFoundError, PlacementError) as exc:
        print(f"placement: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
