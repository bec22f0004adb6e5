"""Real API semantics the reconciler must hold to, with a fake server that answers like one:
a finished run is the record, refused creates reach status, writes converge, Kueue owns
suspend, and a run's state lives and dies with its FineTuneJob's uid."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubetune_api.protocol import Progress, format_progress
from kubetune_operator.events import Event
from kubetune_operator.kube import ApiError
from kubetune_operator.reconcile import Reconciler
from kubetune_operator.settings import OperatorSettings
from tests.operator.fake_api import KEY, OK, SPEC, FakeServer, LaggingIndices, running, terminated


class Operator:
    """A Reconciler on a fake server, writing at once (no status delay)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.indices = LaggingIndices(server)
        self.events: list[Event] = []
        self.reconciler = Reconciler(
            server, OperatorSettings(), self.indices, lambda _, event: self.events.append(event), status_delay=0
        )

    async def step(self) -> dict[str, Any]:
        """One watch event after the server changed: reconcile what it shows now."""
        self.indices.deliver()
        await self.reconciler.reconcile(KEY)
        return self.server.ftj["status"]

    def reasons(self) -> list[str]:
        return [event.reason for event in self.events]


@pytest.fixture
async def made() -> AsyncIterator[tuple[FakeServer, Operator]]:
    server = FakeServer()
    operator = Operator(server)
    try:
        yield server, operator
    finally:
        await operator.reconciler.close()


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


async def succeed(server: FakeServer, operator: Operator) -> dict[str, Any]:
    await operator.step()
    pod = server.add_pod("Running", running())
    server.job_status(startTime="2030-01-01T00:00:01Z", active=1)
    assert (await operator.step())["phase"] == "Running"
    pod["status"] = {"phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": terminated(0, OK)}]}
    server.job_status(active=0, succeeded=1)
    server.job_condition("Complete", "CompletionsReached")
    status = await operator.step()
    assert status["phase"] == "Succeeded"
    return copy.deepcopy(status)


# -- the record only moves forward ----------------------------------------------------------------


async def test_a_finished_run_keeps_its_record_when_its_job_and_pods_go(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    done = await succeed(server, operator)
    assert done["artifact"] == {"uri": "pvc://models/out", "kind": "full"}
    assert done["metrics"] == {"accuracy": 0.9} and done["podName"] and done["completionTime"]
    writes = len(server.called("patch_status"))

    server.pods.clear()  # PodGC, or the terminated-pod threshold
    assert await operator.step() == done
    server.jobs.clear()  # a TTL policy, a cleanup job, or a person
    assert await operator.step() == done
    restarted = Operator(server)  # and the operator restarts meanwhile
    try:
        assert await restarted.step() == done
    finally:
        await restarted.reconciler.close()
    assert server.called("create_job") == ["ftj-train"], "a finished run must never get a new Job"
    assert len(server.called("patch_status")) == writes


async def test_a_failed_run_keeps_its_reason_and_gets_no_fresh_retries(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await operator.step()
    server.add_pod("Failed", terminated(137, reason="OOMKilled"))
    server.job_status(failed=4)
    server.job_condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    failed = copy.deepcopy(await operator.step())
    assert (failed["phase"], failed["reason"]) == ("Failed", "OOMKilled")

    server.pods.clear()
    assert (await operator.step())["reason"] == "OOMKilled"  # not the Job's generic message
    server.jobs.clear()
    assert await operator.step() == failed
    assert server.called("create_job") == ["ftj-train"]


async def test_a_result_gone_with_its_pod_still_names_the_model(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await operator.step()
    server.job_status(succeeded=1)
    server.job_condition("Complete", "CompletionsReached")  # the pod went before it was read
    status = await operator.step()
    assert status["phase"] == "Succeeded"
    assert status["artifact"] == {"uri": "pvc://models/out", "kind": "full"}  # where spec.output says
    assert "metrics were not read" in condition(status, "Ready")["message"]


async def test_a_new_generation_of_a_finished_run_is_observed(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    done = await succeed(server, operator)
    server.edit_spec(suspend=True)  # a finished run ignores suspend: nothing to do but observe
    status = await operator.step()
    assert status["observedGeneration"] == 2 and {c["observedGeneration"] for c in status["conditions"]} == {2}
    assert {k: v for k, v in status.items() if k not in ("observedGeneration", "conditions")} == {
        k: v for k, v in done.items() if k not in ("observedGeneration", "conditions")
    }
    server.edit_spec(trainingArgs={"learning_rate": 1e-3})  # a change that would run differently
    status = await operator.step()
    assert status["observedGeneration"] == 2, "an ignored change is not observed"
    assert condition(status, "SpecChangeIgnored")["status"] == "True"


# -- refused creates reach the status -----------------------------------------------------------------


async def test_an_invalid_job_fails_the_run_with_the_api_servers_message(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    message = 'Job.batch "ftj-train" is invalid: spec.template.spec.affinity: Invalid value'
    server.errors["create_job"] = [ApiError(422, "creating Job ns/ftj-train", f'{{"message": "{message}"}}')]
    status = await operator.step()
    assert (status["phase"], status["reason"]) == ("Failed", "JobCreateFailed")
    assert message in status["message"] and "HTTP 422" in status["message"]
    assert operator.events[-1].type == "Warning" and operator.events[-1].reason == "JobCreateFailed"
    await operator.step()
    assert server.called("create_job") == ["ftj-train"], "an invalid Job is not sent again"


async def test_a_forbidden_create_stalls_and_is_retried(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    server.errors["create_job"] = [ApiError(403, "creating Job ns/ftj-train", '{"message": "exceeded quota: gpus"}')]
    status = await operator.step()
    assert (status["phase"], status["reason"]) == ("Pending", "JobCreateFailed")
    assert condition(status, "Stalled")["status"] == "True" and condition(status, "Reconciling")["status"] == "False"
    assert "exceeded quota: gpus" in status["message"] and operator.events[-1].type == "Warning"
    state = operator.reconciler.runs[KEY]
    assert state.retry is not None, "tried again by itself once the quota frees up"
    state.retry.cancel()
    status = await operator.step()  # the retry: this time the API server takes it
    assert server.jobs and status["phase"] == "Pending" and "reason" not in status
    assert condition(status, "Stalled")["status"] == "False"


@pytest.mark.parametrize("code", [429, 500, 503])
async def test_throttling_and_server_errors_are_retried_quietly(made: tuple[FakeServer, Operator], code: int) -> None:
    server, operator = made
    server.errors["create_job"] = [ApiError(code, "creating Job ns/ftj-train", "busy")]
    status = await operator.step()
    assert status == {} and operator.events == []  # nothing to tell the user
    assert operator.reconciler.runs[KEY].retry is not None
    assert (await operator.step())["phase"] == "Pending" and server.jobs


async def test_a_foreign_job_with_the_name_is_a_conflict_and_left_alone(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    foreign = {"metadata": {"name": "ftj-train", "uid": "other", "labels": {"app": "mine"}}, "spec": {}, "status": {}}
    server.jobs["ftj-train"] = copy.deepcopy(foreign)
    status = await operator.step()
    assert (status["phase"], status["reason"]) == ("Pending", "NameConflict")
    assert "ftj-train" in status["message"] and condition(status, "Stalled")["status"] == "True"
    assert server.jobs["ftj-train"] == foreign
    assert not server.called("patch_job") and not server.called("delete_job")


async def test_our_own_job_found_on_409_is_adopted(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await operator.step()
    created = server.job
    restarted = Operator(server)
    restarted.indices.deliver()
    restarted.indices._jobs = []  # the restarted operator's Job watch has not caught up yet
    try:
        await restarted.reconciler.reconcile(KEY)
        assert "reason" not in server.ftj["status"]
        assert server.called("get_job") == ["ftj-train"] and server.job is created
    finally:
        await restarted.reconciler.close()


async def test_a_deleted_namesakes_job_is_waited_for(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    server.jobs["ftj-train"] = {
        "metadata": {"name": "ftj-train", "uid": "old", "ownerReferences": [{"kind": "FineTuneJob", "uid": "gone"}]},
        "spec": {},
        "status": {},
    }
    status = await operator.step()
    assert "reason" not in status  # garbage collection is on its way: nothing to report
    assert operator.reconciler.runs[KEY].retry is not None


# -- writes converge ------------------------------------------------------------------------------


async def test_an_edit_to_an_owned_field_is_corrected(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await operator.step()
    server.add_pod("Running", running())
    server.job_status(startTime="2030-01-01T00:00:01Z", active=1)
    assert (await operator.step())["phase"] == "Running"
    server.edit_status(phase="Succeeded", reason="Hacked", jobName="elsewhere")
    status = await operator.step()
    assert (status["phase"], status["jobName"]) == ("Running", "ftj-train") and "reason" not in status


async def test_an_edit_to_a_finished_runs_record_is_undone(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    done = await succeed(server, operator)
    server.edit_status(artifact={"uri": "s3://somewhere/else", "kind": "full"}, metrics={})
    assert await operator.step() == done


async def test_a_write_the_watch_has_not_shown_yet_is_not_sent_twice(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await operator.step()
    writes = len(server.called("patch_status"))
    await operator.reconciler.reconcile(KEY)  # another event, the index still before our write
    assert len(server.called("patch_status")) == writes


async def test_progress_keys_that_went_away_are_removed_on_the_server(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await operator.step()
    pod = server.add_pod("Running", running())
    server.job_status(startTime="2030-01-01T00:00:01Z", active=1)
    await operator.step()
    server.log_text = format_progress(Progress(step=2, max_steps=10, eval={"accuracy": 0.5, "f1": 0.4}))
    await operator.reconciler.poll_progress_once(KEY, pod["metadata"]["name"])
    assert server.ftj["status"]["progress"]["eval"] == {"accuracy": 0.5, "f1": 0.4}
    operator.indices.deliver()
    server.log_text = format_progress(Progress(step=4, max_steps=10, eval={"accuracy": 0.7}))
    await operator.reconciler.poll_progress_once(KEY, pod["metadata"]["name"])
    assert server.ftj["status"]["progress"]["eval"] == {"accuracy": 0.7}  # f1 is gone, not left behind


@pytest.mark.parametrize("failure", ["hangs", "raises"])
async def test_the_outcome_never_waits_on_the_log(
    made: tuple[FakeServer, Operator], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    monkeypatch.setattr("kubetune_operator.progress_status.LOG_READ_TIMEOUT", 0.05)
    server, operator = made

    async def unreachable_kubelet() -> str:
        if failure == "raises":
            raise ApiError(502, "reading the log", "the node is gone")
        await asyncio.sleep(60)
        return ""

    server.read_log = unreachable_kubelet
    await operator.step()
    server.add_pod("Succeeded", terminated(0, OK))
    server.job_status(succeeded=1)
    server.job_condition("Complete", "CompletionsReached")
    status = await asyncio.wait_for(operator.step(), 2)
    assert status["phase"] == "Succeeded" and status["artifact"]["uri"] == "pvc://models/out"


# -- the cluster stopping pods, and spec changes ----------------------------------------------------


async def test_too_many_disruptions_fail_the_run_and_release_the_gpus(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    server.ftj["spec"]["maxDisruptions"] = 1
    await operator.step()
    evicted = {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}
    for _ in range(2):  # the node's disk filled up, twice
        server.add_pod("Failed", terminated(137), conditions=[{**evicted, "message": "ephemeral storage"}])
        status = await operator.step()
    assert (status["phase"], status["reason"]) == ("Failed", "TooManyDisruptions")
    assert "2 times" in status["message"] and "spec.maxDisruptions 1" in status["message"]
    await operator.step()  # the record: the Job would retry for free forever, so it goes
    assert server.called("delete_job") == ["ftj-train"] and not server.jobs


async def test_an_ignored_spec_change_is_a_condition_and_not_observed(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    assert (await operator.step())["observedGeneration"] == 1
    server.edit_spec(suspend=True)  # applied: observed
    assert (await operator.step())["observedGeneration"] == 2
    server.edit_spec(suspend=False, trainingArgs={"learning_rate": 1e-3})  # not applied
    status = await operator.step()
    assert status["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in status["conditions"]} == {2}
    assert condition(status, "SpecChangeIgnored")["status"] == "True"
    assert operator.reasons().count("SpecChangeIgnored") == 1
    await operator.step()
    assert operator.reasons().count("SpecChangeIgnored") == 1  # once per generation


# -- Kueue owns suspend -------------------------------------------------------------------------------


async def test_suspend_of_a_queued_run_goes_through_its_workload() -> None:
    server = FakeServer(labels={"kueue.x-k8s.io/queue-name": "team"})
    operator = Operator(server)
    try:
        await operator.step()
        assert server.job["spec"]["suspend"] is True  # created suspended, for Kueue to admit
        server.workloads = [{"metadata": {"name": "job-ftj-train-1"}, "spec": {"active": True}}]
        server.job["spec"]["suspend"] = False  # admitted
        server.ftj["metadata"]["labels"] = {}  # membership is the Job's label, not the FineTuneJob's
        server.edit_spec(suspend=True)
        await operator.step()
        assert server.workloads[0]["spec"]["active"] is False
        server.job["spec"]["suspend"] = True  # Kueue evicts
        assert (await operator.step())["phase"] == "Suspended"
        server.edit_spec(suspend=False)
        await operator.step()
        assert server.workloads[0]["spec"]["active"] is True
        assert not server.called("patch_job"), "Kueue owns spec.suspend of the Jobs it manages"
    finally:
        await operator.reconciler.close()


# -- one state per FineTuneJob, dropped whole --------------------------------------------------------


async def test_state_is_keyed_by_uid_and_dropped_with_the_finetunejob(made: tuple[FakeServer, Operator]) -> None:
    server, operator = made
    await succeed(server, operator)
    assert KEY in operator.reconciler.runs
    server.ftj["metadata"]["deletionTimestamp"] = "2030-01-01T01:00:00Z"
    await operator.step()
    assert operator.reconciler.runs == {} and operator.reconciler.phases == {}
    # A namesake: a new uid, so nothing of the old run's state (its Succeeded record) applies.
    server.ftj = copy.deepcopy(FakeServer(SPEC).ftj)
    server.ftj["metadata"]["uid"] = "new-uid"
    server.jobs.clear()
    status = await operator.step()
    assert operator.reconciler.runs[KEY].uid == "new-uid" and status["phase"] == "Pending"
    assert server.called("create_job") == ["ftj-train", "ftj-train"]


async def test_our_own_write_coming_back_is_not_reconciled_but_an_edit_is(
    made: tuple[FakeServer, Operator], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, operator = made
    await operator.step()
    written = copy.deepcopy(server.ftj["status"])
    reconciled: list[Any] = []
    reconcile = operator.reconciler.reconcile
    monkeypatch.setattr(operator.reconciler, "reconcile", lambda key: reconciled.append(key) or reconcile(key))

    operator.indices.deliver()  # the FineTuneJob's watch event for our write
    await operator.reconciler.finetunejob_changed(KEY)
    assert reconciled == []

    server.edit_status(message="edited by hand")  # someone else's write: a version of its own
    operator.indices.deliver()
    await operator.reconciler.finetunejob_changed(KEY)
    assert reconciled == [KEY]
    assert server.ftj["status"] == written  # the edit is undone
