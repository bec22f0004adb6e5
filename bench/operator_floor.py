"""The floor the operator's CPU per job is measured against (started by operator_scale.py).

    python bench/operator_floor.py URL PLAN.json --jobs N --interval S

A plain aiohttp client that makes, per job, the API calls the operator made in the same
bench run, against a fresh emulator driven by the same simulated Job controller and kubelet:

- it consumes the same three watch streams (FineTuneJobs; trainer Jobs and pods with the
  server-side label selector) and parses every event;
- on a new FineTuneJob: one Job create, the first Event and the first status patch;
- when the pod runs: the next status patch and Events; one progress interval later a log
  read and the progress patch(es);
- when the Job completes: a log read, the last status patch and the last Event.

The bodies are the operator's own, recorded by the emulator from one job of the operator
run (PLAN.json: the Job, the status patches and the Events, in order) and renamed for each
job before the watches open, so preparing them is not counted; each is serialised at send
time, as any client must. What the floor does not do is everything between receiving an
event and sending a request: Kopf's event processing, indices, our reconcile. The CPU of
this process per job is that floor.

It prints "ready" once its watches are open, and runs until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from kubetune_api.trainer_pod import ANNOTATION_FINETUNEJOB, WATCH_SELECTOR  # noqa: E402

USER_AGENT = "kubetune-floor/1"
MAX_CONNECTIONS = 16  # as the operator's own session
FTJ_PATH = "/apis/kubetune.io/v1alpha1"


class Plan:
    """One job's calls, renamed for each job."""

    def __init__(self, recorded: dict[str, Any], jobs: int) -> None:
        self.log_query: str = recorded["log_query"]
        text = json.dumps(recorded)
        self.per_job: dict[str, dict[str, Any]] = {}
        for index in range(jobs):
            name = f"ftj-{index:04d}"  # as operator_scale names them
            self.per_job[name] = json.loads(text.replace(recorded["name"], name))


class Floor:
    def __init__(self, url: str, plan: Plan, interval: float, selector: str = WATCH_SELECTOR) -> None:
        self.url = url
        self.plan = plan
        self.interval = interval
        self.selector = selector
        self.started: set[str] = set()
        self.running: set[str] = set()
        self.completed: set[str] = set()
        self.uids: dict[str, str] = {}  # FineTuneJob name -> uid, from its watch
        self.log_paths: dict[str, str] = {}  # FineTuneJob name -> its pod's log, from the pod watch
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession
        self.watches: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None, merge: bool = False) -> bytes:
        headers = {"Content-Type": "application/merge-patch+json"} if merge else None
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        if data is not None and headers is None:
            headers = {"Content-Type": "application/json"}
        async with self.session.request(method, self.url + path, data=data, headers=headers) as response:
            payload = await response.read()
            if body is not None and response.status < 300:
                json.loads(payload)  # the operator reads the answer too (the new resourceVersion)
            return payload

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the calls of one job ---------------------------------------------------------------

    async def created(self, name: str, uid: str) -> None:
        calls = self.plan.per_job[name]
        job = calls["job"]
        for owner in job["body"]["metadata"].get("ownerReferences", []):
            owner["uid"] = uid
        await self.call("POST", job["path"], job["body"])
        await self.event(calls, 0, uid)
        await self.status(calls, 0)

    async def pod_running(self, name: str, uid: str) -> None:
        calls = self.plan.per_job[name]
        await self.status(calls, 1)
        for index in range(1, len(calls["events"]) - 1):
            await self.event(calls, index, uid)
        await asyncio.sleep(self.interval)
        await self.call("GET", self.log_paths[name])
        for index in range(2, len(calls["statuses"]) - 1):
            await self.status(calls, index)

    async def job_complete(self, name: str, uid: str) -> None:
        calls = self.plan.per_job[name]
        await self.call("GET", self.log_paths[name])
        await self.status(calls, len(calls["statuses"]) - 1)
        await self.event(calls, len(calls["events"]) - 1, uid)

    async def status(self, calls: dict[str, Any], index: int) -> None:
        path, body = calls["statuses"][index]
        await self.call("PATCH", path, body, merge=True)

    async def event(self, calls: dict[str, Any], index: int, uid: str) -> None:
        path, body = calls["events"][index]
        body = copy.copy(body)
        body["involvedObject"] = {**body.get("involvedObject", {}), "uid": uid}
        await self.call("POST", path, body)

    # -- the watch streams ------------------------------------------------------------------

    async def watch(self, path: str, selected: bool) -> asyncio.Task[None]:
        params = {"watch": "true", **({"labelSelector": self.selector} if selected else {})}
        response = await self.watches.get(self.url + path, params=params, timeout=aiohttp.ClientTimeout(total=None))
        response.raise_for_status()

        async def consume() -> None:
            async for line in response.content:
                if line.strip():
                    event = json.loads(line)
                    self.dispatch(path, event.get("type"), event.get("object") or {})

        return asyncio.create_task(consume())

    def dispatch(self, path: str, kind: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if path.endswith("finetunejobs"):
            name = meta.get("name", "")
            if kind == "ADDED" and name not in self.started and name in self.plan.per_job:
                self.started.add(name)
                self.uids[name] = meta.get("uid", "")
                self.spawn(self.created(name, self.uids[name]))
            return
        owner = (meta.get("annotations") or {}).get(ANNOTATION_FINETUNEJOB)
        if owner not in self.uids:
            return
        uid = self.uids[owner]
        status = obj.get("status") or {}
        if path.endswith("pods") and owner not in self.log_paths:
            pod = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            self.log_paths[owner] = f"{pod}/log?{self.plan.log_query}"
        if path.endswith("pods") and status.get("phase") == "Running" and owner not in self.running:
            self.running.add(owner)
            self.spawn(self.pod_running(owner, uid))
        conditions = status.get("conditions") or []
        complete = any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions)
        if path.endswith("jobs") and complete and owner not in self.completed:
            self.completed.add(owner)
            self.spawn(self.job_complete(owner, uid))

    async def run(self) -> None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS), headers=headers)
        self.watches = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers=headers)
        streams = [
            await self.watch(f"{FTJ_PATH}/finetunejobs", selected=False),
            await self.watch("/apis/batch/v1/jobs", selected=True),
            await self.watch("/api/v1/pods", selected=True),
        ]
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for stream in streams:
            stream.cancel()
        await self.session.close()
        await self.watches.close()


def record_plan(bodies: list[tuple[str, str, Any]], log_paths: list[str]) -> dict[str, Any]:
    """One job's calls in the operator run, from the emulator's record of every write: a job
    with the most common number of status patches (some jobs' first two changes fold into one)."""
    patched = Counter(path.split("/")[-2] for _, path, _ in bodies if path.endswith("/status") and FTJ_PATH in path)
    usual = Counter(patched.values()).most_common(1)[0][0]
    name = next(name for name, count in sorted(patched.items()) if count == usual)
    train = f"{name}-train"
    job = next(
        {"path": path, "body": body}
        for method, path, body in bodies
        if method == "POST" and path.endswith("/jobs") and (body.get("metadata") or {}).get("name") == train
    )
    statuses = [[path, body] for method, path, body in bodies if path.endswith(f"/finetunejobs/{name}/status")]
    events = [
        [path, body]
        for method, path, body in bodies
        if method == "POST" and path.endswith("/events") and (body.get("involvedObject") or {}).get("name") == name
    ]
    log_query = next((path.split("?", 1)[1] for path in log_paths if f"/pods/{name}-" in path), "")
    return {"name": name, "job": job, "statuses": statuses, "events": events, "log_query": log_query}


def start(url: str, plan: Path, jobs: int, interval: float) -> subprocess.Popen[str]:
    """The floor client in a process of its own, once its watches are open."""
    command = [sys.executable, __file__, url, str(plan), "--jobs", str(jobs), "--interval", str(interval)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError(f"the floor client did not start: {process.communicate()[1][-2000:]}")
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("plan", type=Path)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    args = parser.parse_args()
    plan = Plan(json.loads(args.plan.read_text()), args.jobs)
    asyncio.run(Floor(args.url, plan, args.interval).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
