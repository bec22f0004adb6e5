"""Operator scale benchmark: N FineTuneJobs created at once against the kmock emulator.

    python bench/operator_scale.py [--jobs 500] [--interval 1.0] [--foreign-pods 10000] [--no-floor]

The operator runs as it does in a cluster (`kopf run -m kubetune_operator` in its own
process, logged in through a kubeconfig); this process serves the emulator (own
thread) and plays the Job controller and kubelet for every Job: a pod that runs,
prints progress lines for a bit more than one progress interval, and succeeds.

Printed: time from FineTuneJob create to Job created (p50, p99), Jobs created per
second, the operator's API requests per job lifecycle (reads and writes; the watch
streams are shared by all jobs and counted apart), its peak memory (VmHWM), and the
CPU time of the operator and of this process (emulator + simulator).
Targets: p99 < 2 s, <= 8 writes per lifecycle, peak memory < 200 MB.

Then the same burst runs against a fresh emulator with `bench/operator_floor.py` in the
operator's place: a plain aiohttp client making the operator's own recorded calls per job
(same watch streams, Job create, status patches, Events, log reads) and nothing between.
Its CPU per job is the floor; the operator's is printed against it (target <= 3x). Machines
of this kind differ by up to 2x in speed and are shared, so compare within one run.
`--profile FILE` samples the operator with py-spy (`bench/profile_summary.py FILE` splits
the samples); `--operator-root DIR` runs another checkout's operator (before/after).

`--foreign-pods N` first fills the cluster with N pods that are not kubetune's (spread
over namespaces, each with a realistic spec): the operator's Job and pod watches carry a
server-side label selector, so its memory must not grow with them. The emulator fixture
applies label selectors the way the API server does.

How the harness keeps out of the measurement (the operator does all its real work, and
the emulator stays the API server):
- All N creations are sent at once, over CONNECTIONS (8) connections, like a client
  such as `kubectl apply`; before, 100 connections made kmock match every request
  against a hundred in flight.
- Every Job gets its full simulated lifecycle as soon as it appears, but at most
  LIFECYCLES (32) run at once, so that the simulator does not take the CPU that the
  operator and the emulator need (on 2 cores all three share them; in a cluster the
  kubelets and controllers run elsewhere). Lifecycles still overlap the creation burst.
- The emulator fixture (tests/operator/cluster.py) looks objects up by key and matches
  reactions against the current request only; kmock scanned every stored object and
  every request in flight on each request, which made the emulator, not the operator,
  the bottleneck (quadratic in N).
Machines shared with other work give noisy latencies: compare the CPU times too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator"), str(ROOT / "trainer_image")]

import operator_floor  # noqa: E402

from kubetune_api.protocol import Progress, format_progress  # noqa: E402
from tests.operator.cluster import EmulatorThread, now, succeeded_result  # noqa: E402
from tests.operator.conftest import write_kubeconfig  # noqa: E402

SPEC: dict[str, Any] = {
    "task": "text-classification",
    "base": {"model": "org/tiny-bert"},
    "data": {"train": "s3://bucket/train.csv"},
    "output": {"uri": "s3://bucket/models"},
    "resources": {"gpus": 1},
}
OPERATOR_AGENTS = ("kopf/", "kubetune-operator/")
FLOOR_AGENTS = (operator_floor.USER_AGENT,)
# The harness's own connections to the emulator (the user creating FineTuneJobs, the
# simulated controllers): a few, like `kubectl apply` or a controller's client. With 100
# the emulator spent its time matching each request against hundreds in flight.
CONNECTIONS = 8
# Simulated pod lifecycles running at once. Each is ~6 API calls spread over ~2 s; capped
# so that the simulator does not take the CPU the operator and the emulator need on a
# small machine. Every Job still gets its full lifecycle, only a little later.
LIFECYCLES = 32


class Bench:
    def __init__(self, served: EmulatorThread, jobs: int, interval: float) -> None:
        self.served = served
        self.url = served.url
        self.jobs = jobs
        self.interval = interval
        self.created_at: dict[str, float] = {}
        self.session: aiohttp.ClientSession | None = None
        self.job_seen_at: dict[str, float] = {}
        self.session: aiohttp.ClientSession | None = None

    async def call(self, method: str, path: str, body: Any = None, merge: bool = False) -> Any:
        assert self.session is not None
        headers = {"Content-Type": "application/merge-patch+json"} if merge else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def create(self, index: int) -> None:
        name = f"ftj-{index:04d}"
        body = {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": "bench", "generation": 1, "creationTimestamp": now()},
            "spec": SPEC,
        }
        self.created_at[name] = time.monotonic()
        await self.call("POST", "/apis/kubetune.io/v1alpha1/namespaces/bench/finetunejobs", body)

    async def lifecycle(self, job_name: str) -> None:
        """The Job controller and kubelet for one Job: pod, run, progress, success."""
        base = f"/apis/batch/v1/namespaces/bench/jobs/{job_name}"
        job = await self.call("GET", base)
        meta = job["metadata"]
        template = job["spec"]["template"]
        pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": "bench",
                "labels": template["metadata"]["labels"],
                "annotations": template["metadata"].get("annotations", {}),
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": meta["uid"], "controller": True}
                ],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        pods = "/api/v1/namespaces/bench/pods"
        await self.call("POST", pods, pod)
        await asyncio.sleep(0.2)
        await self.call("PATCH", f"{base}/status", {"status": {"startTime": now(), "active": 1}}, merge=True)
        running = {"name": "trainer", "ready": True, "state": {"running": {"startedAt": now()}}}
        await self.call(
            "PATCH",
            f"{pods}/{pod_name}/status",
            {"status": {"phase": "Running", "containerStatuses": [running]}},
            merge=True,
        )
        self.served.logs[("bench", pod_name)] = (
            format_progress(Progress(step=10, max_steps=100, loss=1.0, elapsed_seconds=5)) + "\n"
        )
        await asyncio.sleep(self.interval * 1.6)
        self.served.logs[("bench", pod_name)] = (
            format_progress(Progress(step=100, max_steps=100, loss=0.2, elapsed_seconds=50)) + "\n"
        )
        done = {
            "name": "trainer",
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "message": succeeded_result("s3://bucket/models", "full"),
                }
            },
        }
        await self.call(
            "PATCH",
            f"{pods}/{pod_name}/status",
            {"status": {"phase": "Succeeded", "containerStatuses": [done]}},
            merge=True,
        )
        complete = [{"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now()}]
        await self.call(
            "PATCH",
            f"{base}/status",
            {"status": {"active": 0, "succeeded": 1, "conditions": complete, "completionTime": now()}},
            merge=True,
        )

    async def controller(self, stop: asyncio.Event) -> None:
        """Start a lifecycle for every Job the operator creates, at most LIFECYCLES at a time."""
        seen = 0
        tasks = []
        log = self.served.emulator.log
        slots = asyncio.Semaphore(LIFECYCLES)

        async def bounded(name: str) -> None:
            async with slots:
                await self.lifecycle(name)

        while not stop.is_set():
            entries = log[seen:]
            seen += len(entries)
            for method, _path, _agent, at in entries:
                name = self.served.emulator.job_posts.get(at) if method == "POST" else None
                if name is not None and name not in self.job_seen_at:
                    self.job_seen_at[name] = at
                    tasks.append(asyncio.create_task(bounded(name)))
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)

    async def wait_all_succeeded(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            listing = await self.call("GET", "/apis/kubetune.io/v1alpha1/namespaces/bench/finetunejobs")
            done = sum(1 for item in listing["items"] if (item.get("status") or {}).get("phase") == "Succeeded")
            if done == self.jobs:
                break
            await asyncio.sleep(0.5)
        return done

    async def run(self) -> dict[str, Any]:
        self.session = self.session or aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        stop = asyncio.Event()
        controller = asyncio.create_task(self.controller(stop))
        mark = len(self.served.emulator.log)
        start = time.monotonic()
        await asyncio.gather(*(self.create(i) for i in range(self.jobs)))
        succeeded = await self.wait_all_succeeded(timeout=120 + self.interval * 4)
        await asyncio.sleep(self.interval * 2)  # let trailing progress reads land in the counts
        stop.set()
        await controller
        await self.session.close()
        return {"start": start, "mark": mark, "succeeded": succeeded}


async def fill_with_foreign_pods(url: str, count: int) -> None:
    """`count` pods of other workloads (web servers, batch jobs) in 20 namespaces."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:

        async def one(index: int) -> None:
            namespace = f"team-{index % 20}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"web-{index:05d}",
                    "namespace": namespace,
                    "labels": {"app": "web", "pod-template-hash": f"{index:010x}"},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example/web:1.2.3",
                            "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(10)],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        }
                    ]
                },
                "status": {"phase": "Running", "podIP": f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"},
            }
            async with session.post(f"{url}/api/v1/namespaces/{namespace}/pods", json=pod) as response:
                response.raise_for_status()

        for start in range(0, count, 200):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Run:
    """One burst against one process (the operator, or the floor client)."""

    bench: Bench
    result: dict[str, Any]
    cpu_per_job_ms: float
    peak_kib: int
    cpu: str  # the process's CPU time, in words

    def latencies(self) -> list[float]:
        seen = {job.removesuffix("-train"): at for job, at in self.bench.job_seen_at.items()}
        return [seen[name] - self.bench.created_at[name] for name in self.bench.created_at if name in seen]

    def counts(self, agents: tuple[str, ...]) -> tuple[Counter[str], Counter[str], int]:
        """(writes, reads, watch streams) of the process, counted by user agent."""
        log = self.bench.served.emulator.log
        ours = [(m, p) for m, p, agent, _ in log[self.result["mark"] :] if agent.startswith(agents)]
        watches = sum(1 for m, p, agent, _ in log if agent.startswith(agents) and "watch=" in p)
        get = [p for m, p in ours if m == "GET" and "watch=" not in p]
        reads = Counter(p.rsplit("/", 1)[-1] if "/log" in p else "get" for p in get)
        return Counter(_kind(m, p) for m, p in ours if m != "GET"), reads, watches


def burst(served: EmulatorThread, process: subprocess.Popen[str], args: argparse.Namespace) -> Run:
    """Create the FineTuneJobs, play every Job's lifecycle, and measure `process` meanwhile."""
    startup_cpu = read_cpu_seconds(process.pid)
    profiler = start_profiler(process.pid, args.profile) if args.profile else None
    bench = Bench(served, args.jobs, args.interval)
    result = asyncio.run(bench.run())
    if profiler is not None:
        stop_profiler(profiler)
    cpu_seconds = read_cpu_seconds(process.pid)
    user, system = read_cpu_split(process.pid)
    work = cpu_seconds - startup_cpu
    cpu = f"{cpu_seconds:.1f} s: {startup_cpu:.1f} s starting (user {user:.1f} s, system {system:.1f} s)"
    return Run(bench, result, work / args.jobs * 1000, read_peak_kib(process.pid), cpu)


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def run_operator(args: argparse.Namespace, served: EmulatorThread, tmp: str) -> tuple[Run, str]:
    kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", served.url)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBETUNE_METRICS_PORT": "0",
        "KUBETUNE_PROGRESS_INTERVAL_SECONDS": str(args.interval),
        # This checkout's code (or --operator-root's) before the installed one.
        "PYTHONPATH": os.pathsep.join(str(args.operator_root / part) for part in ("", "operator", "trainer_image")),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    liveness = "http://127.0.0.1:18081/healthz"
    # The chart's flags at its default log level (info): what the operator logs per event is
    # part of its cost. The log goes to a file: a pipe nobody reads would block the operator.
    command = [sys.executable, "-m", "kopf", "run", "-m", "kubetune_operator", "--standalone", "-A"]
    command += ["--log-format=plain", f"--liveness={liveness}"]
    log_file = Path(tmp) / "operator.log"
    with log_file.open("w") as log:
        operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_ready(liveness, operator)
            run = burst(served, operator, args)
        finally:
            stop(operator)
    err = log_file.read_text()
    print(f"operator log:                  {len(err.splitlines())} lines", file=sys.stderr)
    if os.environ.get("BENCH_DEBUG") or operator.returncode not in (0, -15):
        print(err[-4000:], file=sys.stderr)
    return run, err


def run_floor(args: argparse.Namespace, plan: dict[str, Any], tmp: str) -> Run:
    """The same burst against a fresh emulator, with the floor client in the operator's place."""
    plan_file = Path(tmp) / "plan.json"
    plan_file.write_text(json.dumps(plan))
    with EmulatorThread() as served:
        if args.foreign_pods:
            asyncio.run(fill_with_foreign_pods(served.url, args.foreign_pods))
        floor = operator_floor.start(served.url, plan_file, args.jobs, args.interval)
        try:
            return burst(served, floor, argparse.Namespace(**{**vars(args), "profile": None}))
        finally:
            stop(floor)


def report(title: str, run: Run, agents: tuple[str, ...], args: argparse.Namespace) -> None:
    latencies = run.latencies()
    writes, reads, watches = run.counts(agents)
    n = args.jobs

    def per_job(counts: Counter[str]) -> str:
        return ", ".join(f"{kind} {count / n:.2f}" for kind, count in sorted(counts.items()))

    first, last = min(run.bench.created_at.values()), max(run.bench.job_seen_at.values(), default=0.0)
    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    print(f"-- {title}")
    print(f"FineTuneJobs created:          {n} at once; {run.result['succeeded']} reached Succeeded")
    print(f"Jobs created:                  {len(latencies)}")
    print(f"create -> Job created:         p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(latencies):.3f} s")
    print(f"throughput:                    {len(latencies) / (last - first):.1f} Jobs created per second")
    print(f"writes per job lifecycle:      {sum(writes.values()) / n:.2f}  ({per_job(writes)})")
    print(f"reads per job lifecycle:       {sum(reads.values()) / n:.2f}  ({per_job(reads)})")
    print(f"watch streams (all jobs):      {watches}")
    print(f"peak memory (VmHWM):           {run.peak_kib / 1024:.1f} MiB")
    print(f"CPU time:                      {run.cpu}, then {run.cpu_per_job_ms:.1f} ms per job")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--interval", type=float, default=1.0, help="KUBETUNE_PROGRESS_INTERVAL_SECONDS")
    parser.add_argument("--foreign-pods", type=int, default=0, help="pods of other workloads in the cluster first")
    parser.add_argument(
        "--profile", metavar="FILE", help="sample the operator with py-spy during the burst (collapsed stacks to FILE)"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor client's run")
    parser.add_argument(
        "--operator-root",
        type=Path,
        default=ROOT,
        help="run the operator from this checkout (e.g. another branch's worktree, for before/after figures)",
    )
    args = parser.parse_args()

    with EmulatorThread() as served, tempfile.TemporaryDirectory() as tmp:
        served.emulator.bodies = []
        if args.foreign_pods:
            asyncio.run(fill_with_foreign_pods(served.url, args.foreign_pods))
        operator, err = run_operator(args, served, tmp)
        if not operator.bench.job_seen_at:
            print(f"no Job was created; operator log:\n{err[-3000:]}", file=sys.stderr)
            return 1
        log_reads = [p for m, p, agent, _ in served.emulator.log if agent.startswith(OPERATOR_AGENTS) and "/log" in p]
        plan = operator_floor.record_plan(served.emulator.bodies, log_reads)
        simulator_cpu = time.process_time()
        floor = None if args.no_floor else run_floor(args, plan, tmp)

    print(f"foreign pods in the cluster:   {args.foreign_pods}")
    report(f"the operator (kopf run -m kubetune_operator, from {args.operator_root})", operator, OPERATOR_AGENTS, args)
    print(f"emulator + simulator CPU time: {simulator_cpu:.1f} s (this process, during the operator's run)")
    if floor is not None:
        title = "the floor (bench/operator_floor.py: the operator's API calls, nothing between)"
        report(title, floor, FLOOR_AGENTS, args)
        ratio = operator.cpu_per_job_ms / floor.cpu_per_job_ms
        print("--")
        print(
            f"operator CPU per job {operator.cpu_per_job_ms:.1f} ms, floor {floor.cpu_per_job_ms:.1f} ms: "
            f"{ratio:.2f}x the floor (target <= 3x)"
        )
    return 0


def _kind(method: str, path: str) -> str:
    if path.endswith("/events"):
        return "event"
    if path.endswith("/status"):
        return "status"
    if method == "POST" and path.endswith("/jobs"):
        return "job-create"
    return f"{method.lower()} {path.rsplit('/', 2)[-2]}"


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the operator did not become live")


def start_profiler(pid: int, path: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the whole operator process (Kopf's loop, its thread pool, aiohttp):
    collapsed stacks, one line per distinct stack with its sample count."""
    beside = Path(sys.executable).with_name("py-spy")
    py_spy = str(beside) if beside.exists() else "py-spy"
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--nonblocking", "-o", path]
    profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches before the burst starts
    return profiler


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    profiler.wait(timeout=60)


def read_cpu_seconds(pid: int) -> float:
    return sum(read_cpu_split(pid))


def read_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def read_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
