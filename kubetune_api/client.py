"""The Python client: submit a FineTuneJob, follow it, read its log, fetch its model.

    from kubetune_api import Client

    client = Client()                      # the current kube context and its namespace
    name = client.submit("org/base", "s3://bucket/train.csv", lora=True, learning_rate=3e-5)
    run = client.wait(name, callback=lambda run: print(run.progress))
    client.fetch(name, "./model")

It talks to the API server only (kube config as kubectl reads it, `kubetune_api.kubeconfig`);
the operator does the rest. Every submit is checked first, with `kubetune validate`'s
messages (`kubetune_api.submission`).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kubetune_api.fetch_pvc import DEFAULT_FETCH_IMAGE, ExecStdout, FetchError, fetch_from_claim, kubernetes_exec_stdout
from kubetune_api.fetch_store import fetch_from_store
from kubetune_api.hftrainer_spec import hftrainer_spec
from kubetune_api.kube_http import KubeError, KubeHttp, api_path
from kubetune_api.kubeconfig import Connection, connect
from kubetune_api.manifest import ManifestError, read_documents
from kubetune_api.resource import API_GROUP, API_VERSION, KIND, PLURAL
from kubetune_api.run_status import RunFailed, RunStatus
from kubetune_api.submission import Submission, prepare, spec_document
from kubetune_api.trainer_logs import Follower, newest_pod, started
from kubetune_api.trainer_pod import CONTAINER_NAME, run_pods_selector
from kubetune_api.training import TrainingSpec
from kubetune_api.uris import OCI_SCHEME, PVC_SCHEME, uri_scheme

# Looks at a run in a row that may fail (API server restarting, throttled) before wait gives up.
TRANSIENT_FAILURES = 10
JobSource = TrainingSpec | Mapping[str, Any] | str | os.PathLike[str]
Callback = Callable[[RunStatus], None]


class NoTrainerPodError(LookupError):
    """The run has no trainer pod (of that rank) to read a log from, yet or any more."""


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class Client:
    """FineTuneJobs in one cluster, by default in the kube context's namespace."""

    def __init__(
        self,
        context: str | None = None,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        connection: Connection | None = None,
        exec_stdout: ExecStdout = kubernetes_exec_stdout,
        interval: float = 2.0,
    ) -> None:
        self.connection = connection or connect(context, namespace, kubeconfig)
        self.namespace = self.connection.namespace
        self.interval = interval  # seconds between two looks at a run (wait, logs -f, fetch)
        self._http = KubeHttp(self.connection)
        self._exec_stdout = exec_stdout

    def _path(self, namespace: str | None, name: str = "") -> str:
        segments = ["namespaces", namespace or self.namespace, PLURAL, *([name] if name else [])]
        return api_path(*segments, group=API_GROUP, version=API_VERSION)

    # -- submitting ------------------------------------------------------------------------

    def submit(
        self,
        job: JobSource,
        train: Any = None,
        validation: Any = None,
        *,
        name: str | None = None,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        output: str | None = None,
        gpus: int | None = None,
        spec_fields: Mapping[str, Any] | None = None,
        **keywords: Any,
    ) -> str:
        """Create one FineTuneJob; returns its name.

        `job` is a spec (FineTuneJobSpec, or a dict of it), a whole FineTuneJob (a dict with
        apiVersion and kind, or a manifest file holding one), or, with `train`, the base
        model of an `HFTrainer()(base, train, ...)` call whose other keywords follow.
        `output`, `gpus` and `spec_fields` (any other spec fields, camelCase) set or
        override spec fields in every form. Without a name, the API server makes one from
        the base model's. Raises NotForClusterError or ManifestError before anything is created.
        """
        if train is not None:
            document = spec_document(hftrainer_spec(job, train, validation, **keywords), name, labels)
        elif keywords or validation is not None:
            raise TypeError(f"HFTrainer keywords {sorted(keywords)} need the training data: submit(base, train, ...)")
        elif isinstance(job, TrainingSpec) or (isinstance(job, Mapping) and "kind" not in job):
            document = spec_document(job, name, labels)
        else:
            document = self._one_document(job)
            metadata = document.setdefault("metadata", {})
            if name:
                metadata.pop("generateName", None)
                metadata["name"] = name
            if labels:
                metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        spec = document.setdefault("spec", {})
        overrides: dict[str, Any] = dict(spec_fields or {})
        if output is not None:
            overrides["output"] = {**(overrides.get("output") or {}), "uri": output}
        if gpus is not None:
            overrides["resources"] = {**(overrides.get("resources") or {}), "gpus": gpus}
        if isinstance(spec, dict):
            _merge(spec, overrides)
        return self.create(prepare(document, namespace or self.namespace))

    @staticmethod
    def _one_document(job: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
        if isinstance(job, Mapping):
            return copy.deepcopy(dict(job))  # the caller's object stays as it was
        documents = read_documents(Path(job))
        if len(documents) != 1:
            raise ManifestError(f"{os.fspath(job)} holds {len(documents)} {KIND}s: use submit_all for it")
        return documents[0]

    def submit_all(self, path: str | os.PathLike[str], *, namespace: str | None = None) -> list[str]:
        """Create every FineTuneJob of a manifest file, after checking all of them; their names."""
        submissions = [prepare(document, namespace or self.namespace) for document in read_documents(Path(path))]
        return [self.create(submission) for submission in submissions]

    def create(self, submission: Submission) -> str:
        """Send a checked FineTuneJob to the API server; the name it got."""
        namespace = submission.body["metadata"]["namespace"]
        try:
            created = self._http.request("POST", self._path(namespace), body=submission.body)
        except KubeError as error:
            if error.status == 409:
                what = f"{KIND} {namespace}/{submission.name} exists already (delete it first, or choose another name)"
                raise KubeError(409, what, error.detail.encode()) from None
            raise
        return str(created["metadata"]["name"])

    # -- reading ---------------------------------------------------------------------------

    def get(self, name: str, *, namespace: str | None = None) -> RunStatus:
        """The run's status now; NotFoundError when there is no such FineTuneJob."""
        return RunStatus.from_object(self._http.request("GET", self._path(namespace, name)))

    def runs(self, *, namespace: str | None = None) -> list[RunStatus]:
        """Every FineTuneJob of the namespace, by name."""
        listing = self._http.request("GET", self._path(namespace)) or {}
        return sorted((RunStatus.from_object(item) for item in listing.get("items") or []), key=lambda run: run.name)

    def wait(
        self,
        name: str,
        *,
        callback: Callback | None = None,
        timeout: float | None = None,
        check: bool = True,
        namespace: str | None = None,
    ) -> RunStatus:
        """Follow the run's status until it is Succeeded or Failed, calling `callback` with
        every status that differs from the one before (phase, progress, reason).

        Returns the final status; with `check` (the default) a Failed run raises RunFailed
        (its `run` and `exit_code`). TimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: RunStatus | None = None
        failures = 0
        while True:
            try:
                run = self.get(name, namespace=namespace)
                failures = 0
            except KubeError as error:
                # A run takes hours; an API server restart or a throttled request must not end the wait.
                failures += 1
                if not error.transient or failures > TRANSIENT_FAILURES:
                    raise
                time.sleep(self.interval)
                continue
            if callback is not None and (last is None or run.status != last.status):
                callback(run)
            last = run
            if run.finished:
                if check and not run.succeeded:
                    raise RunFailed(run)
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{run.namespace}/{name} is still {run.phase or 'not started'} after {timeout:g}s")
            time.sleep(self.interval)

    def trainer_pods(self, run: RunStatus) -> list[dict[str, Any]]:
        """The run's trainer pods, every attempt's."""
        path = api_path("namespaces", run.namespace, "pods")
        listing = self._http.request("GET", path, query={"labelSelector": run_pods_selector(run.name, run.uid)})
        return list((listing or {}).get("items") or [])

    def logs(
        self,
        name: str,
        *,
        follow: bool = False,
        rank: int = 0,
        tail: int | None = None,
        namespace: str | None = None,
    ) -> Iterator[str]:
        """The trainer's log, line by line, from the run's current pod (the newest, across
        retries; in a multi-node run the one of node `rank`).

        With `follow`, lines as they come until the run is finished, carrying on in the
        pod of each retry. NoTrainerPodError when there is no pod to read (without follow).
        """
        run = self.get(name, namespace=namespace)
        if not 0 <= rank < run.nodes:
            raise ValueError(f"rank {rank}: {run.name} runs on {run.nodes} node(s), ranks 0 to {run.nodes - 1}")
        if follow:
            return iter(Follower(_RunLogs(self, run), rank, self.interval))
        pod = newest_pod(self.trainer_pods(run), rank)
        if pod is None or not started(pod):
            where = f" for rank {rank}" if run.nodes > 1 else ""
            state = "no trainer pod" if pod is None else f"trainer pod {pod['metadata']['name']} has not started"
            hint = "its pods are gone; the status keeps the outcome" if run.finished else "follow=True waits for it"
            raise NoTrainerPodError(f"{run.name}: {state}{where}; the run is {run.state}; {hint}")
        return self.pod_log(run.namespace, pod["metadata"]["name"], follow=False, tail=tail)

    def pod_log(self, namespace: str, pod: str, *, follow: bool, tail: int | None) -> Iterator[str]:
        """The trainer container's log of one pod, line by line."""
        path = api_path("namespaces", namespace, "pods", pod, "log")
        return self._http.lines(path, {"container": CONTAINER_NAME, "follow": follow, "tailLines": tail})

    # -- changing --------------------------------------------------------------------------

    def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Delete the FineTuneJob; its Job and pods go with it, never the saved model."""
        self._http.request("DELETE", self._path(namespace, name), query={"propagationPolicy": "Background"})

    def fetch(
        self,
        name: str,
        directory: str | os.PathLike[str],
        *,
        checkpoints: bool = False,
        image: str = DEFAULT_FETCH_IMAGE,
        namespace: str | None = None,
    ) -> Path:
        """Copy the run's model (its artifact, without checkpoints unless asked) into `directory`.

        An object store is read directly with fsspec, a registry (oci://) with oras and this
        machine's Docker config (checkpoints stay in spec.output.checkpointUri); a PVC through a
        short-lived pod that mounts the claim read-only (`image`), deleted afterwards.
        """
        run = self.get(name, namespace=namespace)
        if run.artifact is None:
            raise FetchError(f"{run.name} has no model yet: the run is {run.state}")
        destination = Path(directory)
        if uri_scheme(run.artifact.uri) == PVC_SCHEME:
            fetch_from_claim(
                self._http,
                self._exec_stdout,
                run,
                run.artifact.uri,
                destination,
                image=image,
                checkpoints=checkpoints,
                interval=min(self.interval, 1.0),
            )
        elif uri_scheme(run.artifact.uri) == OCI_SCHEME:
            from kubetune_api.fetch_oci import fetch_from_registry

            fetch_from_registry(run.artifact.uri, destination, insecure=run.insecure_registry)
        else:
            fetch_from_store(run.artifact.uri, destination, checkpoints=checkpoints)
        return destination


class _RunLogs:
    """`trainer_logs.RunLogs` for one run through a Client."""

    def __init__(self, client: Client, run: RunStatus) -> None:
        self._client = client
        self._run = run

    def pods(self) -> list[dict[str, Any]]:
        return self._client.trainer_pods(self._run)

    def finished(self) -> bool:
        return self._client.get(self._run.name, namespace=self._run.namespace).finished

    def lines(self, pod: str, follow: bool, tail: int | None) -> Iterator[str]:
        return self._client.pod_log(self._run.namespace, pod, follow=follow, tail=tail)


__all__ = ["Client", "NoTrainerPodError", "RunFailed", "RunStatus"]
