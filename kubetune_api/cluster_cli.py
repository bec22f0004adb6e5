"""The `kubetune` commands that work on a cluster, through `kubetune_api.client.Client`.

kubetune submit FILE [--wait | --follow]   create the FineTuneJobs of a manifest
kubetune get [NAME]                        one line per run: phase, progress, loss, ETA, reason
kubetune status NAME                       one run in full: progress, eval metrics, model, reason
kubetune logs NAME [-f] [--rank N]         the trainer's log, from the run's current pod
kubetune wait NAME                         a progress bar, then exit with the outcome's code
kubetune fetch NAME DIR                    copy the trained model here
kubetune delete NAME                       delete the run (never its saved model)

Each takes -n/--namespace, --context and --kubeconfig as kubectl does. Exit codes: 0 for
Succeeded, 78 (EXIT_INVALID_CONFIG) for a run that is wrong as written (a refused spec,
InvalidSpec, InvalidConfig, InvalidData, JobCreateFailed), 1 for any other failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubetune_api.client import Client, NoTrainerPodError
from kubetune_api.fetch_pvc import DEFAULT_FETCH_IMAGE, FetchError
from kubetune_api.hftrainer_spec import NotForClusterError
from kubetune_api.kube_http import KubeError, NotFoundError
from kubetune_api.kubeconfig import KubeConfigError
from kubetune_api.manifest import ManifestError
from kubetune_api.outcomes import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED
from kubetune_api.resource import CRD_NAME, KIND
from kubetune_api.run_display import ProgressDisplay, detail_lines, outcome_line, table_lines

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
POLL_INTERVAL = 2.0  # seconds between two looks at a run (wait, logs -f, fetch)
Handler = Callable[[Client, argparse.Namespace], int]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _connected(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Run `handler` with a client for the flags, turning the client's errors into messages
    and exit codes instead of tracebacks."""

    def run(args: argparse.Namespace) -> int:
        try:
            client = Client(args.context, args.namespace, kubeconfig=args.kubeconfig, interval=POLL_INTERVAL)
            return handler(client, args)
        except (ManifestError, NotForClusterError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_INVALID_CONFIG
        except NotFoundError as error:
            print(f"error: {_not_found(error, args)}", file=sys.stderr)
            return EXIT_FAILED
        except (KubeConfigError, KubeError, NoTrainerPodError, FetchError, ValueError, OSError) as error:
            # OSError: wait's TimeoutError, a folder fetch cannot write to
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED

    return run


# What the API server says when it does not know the resource at all (no CRD), rather than
# the one object.
UNKNOWN_RESOURCE = "could not find the requested resource"


def _not_found(error: NotFoundError, args: argparse.Namespace) -> str:
    name = getattr(args, "name", None)
    if name and UNKNOWN_RESOURCE not in error.detail:
        return f"no {KIND} {name!r} in namespace {args.namespace or 'of the kube context'}"
    return f"{error.detail}: is kubetune installed in this cluster (the {CRD_NAME} CRD)? See docs/install.md"


def _wait(client: Client, name: str, timeout: float | None) -> int:
    display = ProgressDisplay()
    try:
        run = client.wait(name, callback=display.update, timeout=timeout, check=False)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; {name} goes on (kubetune wait {name} to watch again)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        display.close()
    print(outcome_line(run))
    return run.exit_code if run.exit_code is not None else EXIT_FAILED


def _follow(client: Client, name: str) -> int:
    try:
        for line in client.logs(name, follow=True):
            print(line, flush=True)
    except KeyboardInterrupt:
        print(f"\nstopped following; {name} goes on (kubetune logs -f {name} to follow again)", file=sys.stderr)
        return EXIT_INTERRUPTED
    run = client.get(name)
    print(outcome_line(run))
    return run.exit_code if run.exit_code is not None else EXIT_FAILED


def _submit(client: Client, args: argparse.Namespace) -> int:
    try:
        names = client.submit_all(args.file, namespace=args.namespace)
    except OSError as error:  # the file cannot be read: as kubetune validate says it
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    for name in names:
        print(f"{CRD_NAME}/{name} created")
    if args.follow:
        if len(names) != 1:
            print(f"error: --follow follows one run; {args.file} holds {len(names)}", file=sys.stderr)
            return EXIT_FAILED
        return _follow(client, names[0])
    if args.wait:
        return max(_wait(client, name, args.timeout) for name in names)
    return EXIT_SUCCEEDED


def _get(client: Client, args: argparse.Namespace) -> int:
    runs = [client.get(args.name)] if args.name else client.runs()
    if not runs:
        print(f"No {KIND}s in namespace {client.namespace}.")
    for line in table_lines(runs, _now()) if runs else []:
        print(line)
    return EXIT_SUCCEEDED


def _status(client: Client, args: argparse.Namespace) -> int:
    for line in detail_lines(client.get(args.name), _now()):
        print(line)
    return EXIT_SUCCEEDED


def _logs(client: Client, args: argparse.Namespace) -> int:
    try:
        for line in client.logs(args.name, follow=args.follow, rank=args.rank, tail=args.tail):
            print(line, flush=True)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_SUCCEEDED


def _wait_command(client: Client, args: argparse.Namespace) -> int:
    return _wait(client, args.name, args.timeout)


def _fetch(client: Client, args: argparse.Namespace) -> int:
    destination = client.fetch(args.name, args.directory, checkpoints=args.checkpoints, image=args.image)
    print(f"{args.name}: model copied to {destination}")
    return EXIT_SUCCEEDED


def _delete(client: Client, args: argparse.Namespace) -> int:
    client.delete(args.name)
    print(f'{CRD_NAME} "{args.name}" deleted')
    return EXIT_SUCCEEDED


def register(commands: Any) -> None:
    """Add the cluster commands to the `kubetune` parser's sub-commands."""
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")
    cluster.add_argument("--context", help="kube config context (default: the current one)")
    cluster.add_argument("--kubeconfig", help="kube config file(s) (default: $KUBECONFIG, else ~/.kube/config)")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, parents=[cluster], help=help_text)
        parser.set_defaults(handler=_connected(handler))
        return parser

    submit = add("submit", _submit, "create the FineTuneJobs of a manifest in the cluster")
    submit.add_argument("file")
    follow_or_wait = submit.add_mutually_exclusive_group()
    follow_or_wait.add_argument("--wait", action="store_true", help="show progress until the run ends")
    follow_or_wait.add_argument("--follow", action="store_true", help="print the trainer's log until the run ends")
    submit.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")

    get = add("get", _get, "list runs: phase, progress, loss, ETA, reason")
    get.add_argument("name", nargs="?")
    add("status", _status, "show one run: progress, eval metrics, model, reason").add_argument("name")

    logs = add("logs", _logs, "print the trainer's log (the current pod, across retries)")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--rank", type=int, default=0, help="multi-node runs: the node rank (default 0)")
    logs.add_argument("--tail", type=int, help="only the last N lines")

    wait = add("wait", _wait_command, "show progress until the run ends; exit 0, 78 (wrong run) or 1")
    wait.add_argument("name")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")

    fetch = add("fetch", _fetch, "copy the trained model into a folder")
    fetch.add_argument("name")
    fetch.add_argument("directory")
    fetch.add_argument("--checkpoints", action="store_true", help="also copy checkpoint-N folders")
    fetch.add_argument("--image", default=DEFAULT_FETCH_IMAGE, help="PVC artifacts: the copy pod's image")

    add("delete", _delete, "delete a run (its Job and pods; never the saved model)").add_argument("name")
