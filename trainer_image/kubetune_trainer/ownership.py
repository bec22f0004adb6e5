"""Which run owns an output: the run marker kubetune-run.json, checked before anything is resumed.

A run writes the marker at the top of its output before its first checkpoint:

    {"kubetuneRun": 1, "job": "team/sentiment", "uid": "<FineTuneJob uid or null>",
     "trainingHash": "sha256:...", "spec": {<the hashed part of the spec, credentials redacted>},
     "startedAt": "2026-12-01T21:00:00+00:00", "kubetuneVersion": "..."}

`trainingHash` is `kubetune_api.training_hash.training_hash(spec, processes)`. At preflight every
process reads the marker (`check_owner`):

* no marker and nothing else there (or only lost+found): a fresh output;
* a marker with this run's training hash: this run's own output (a retried pod), or the same
  spec re-created under a new uid: the checkpoints are resumed, which is what resume is for;
* a marker with another hash, an unreadable marker, or files without a marker (another
  tool's, or a kubetune release before markers): `OutputInUseError`, naming the owner and
  the fix. Nothing is read, resumed or removed then.

After all processes agree, global rank 0 takes the output over (`claim`): it writes its
own marker, then removes everything but complete checkpoints and the marker (a stale
kubetune.json among them, so its presence keeps meaning "this run finished").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kubetune_api import __version__
from kubetune_api.credentials import redact
from kubetune_api.output_layout import FOREIGN_ENTRIES, RUN_MARKER
from kubetune_api.protocol import Tolerant
from kubetune_api.training import TrainingSpec
from kubetune_api.training_hash import training_hash, training_relevant
from kubetune_trainer.artifacts import (
    OutputLocation,
    keep_only_resume_state,
    output_entries,
    read_output_file,
    write_output_file,
)
from kubetune_trainer.errors import OutputInUseError

MARKER_FORMAT = 1
_SHOWN = 5  # entries or differences named in a message


class RunMarker(Tolerant):
    """The contents of kubetune-run.json (camelCase; unknown fields of newer releases ignored)."""

    kubetune_run: int = MARKER_FORMAT
    job: str
    uid: str | None = None
    training_hash: str
    spec: dict[str, Any] = {}
    started_at: str
    kubetune_version: str | None = None

    def describe(self) -> str:
        """'FineTuneJob team/x (uid 123, started 2026-...)' for messages."""
        return f"FineTuneJob {self.job} (uid {self.uid or 'none: a local run'}, started {self.started_at})"


@dataclass(frozen=True)
class RunIdentity:
    """This run, as its marker will say."""

    job: str
    uid: str | None
    training_hash: str
    spec: dict[str, Any]  # the hashed part of the spec, credentials redacted

    @classmethod
    def of(cls, spec: TrainingSpec, *, job: str, uid: str | None, processes: int) -> RunIdentity:
        relevant = redact(training_relevant(spec, processes))
        return cls(job=job, uid=uid or None, training_hash=training_hash(spec, processes), spec=relevant)

    def marker(self, started_at: datetime) -> RunMarker:
        return RunMarker(
            job=self.job,
            uid=self.uid,
            training_hash=self.training_hash,
            spec=self.spec,
            started_at=started_at.isoformat(),
            kubetune_version=__version__,
        )


def check_owner(output: OutputLocation, run: RunIdentity) -> list[str]:
    """Warnings when `run` may use `output`; OutputInUseError (naming the owner and the fix) if not."""
    fix = f"give this run another output.uri, or delete the old output ({output.uri}) to start over"
    raw = read_output_file(output, RUN_MARKER)
    if raw is None:
        found = [name for name in output_entries(output) if name not in FOREIGN_ENTRIES]
        if not found:
            return []
        shown = ", ".join(found[:_SHOWN]) + (f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else "")
        raise OutputInUseError(
            f"output.uri {output.uri} already holds files no kubetune run has marked as its own "
            f"(no {RUN_MARKER}; found {shown}): a kubetune release before run markers, or another tool, wrote "
            f"them; kubetune never trains on top of them: {fix}"
        )
    try:
        owner = RunMarker.model_validate_json(raw)
    except ValidationError as error:
        problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors()[:_SHOWN])
        raise OutputInUseError(
            f"output.uri {output.uri}: its run marker {RUN_MARKER} cannot be read ({problem}), so the run "
            f"that owns the output is unknown; kubetune never trains on top of it: {fix}"
        ) from None
    if owner.training_hash != run.training_hash:
        changed = differences(owner.spec, run.spec)
        what = f"differs in {', '.join(changed)}" if changed else "differs (in a redacted value, or by release)"
        raise OutputInUseError(
            f"output.uri {output.uri} belongs to {owner.describe()}, whose training spec {what}; "
            f"kubetune never trains on top of another run's checkpoints: {fix}"
        )
    if (owner.uid, owner.job) != (run.uid, run.job):
        return [f"output.uri {output.uri} was started by {owner.describe()} with the same training spec: taken over"]
    return []


def claim(output: OutputLocation, run: RunIdentity, started_at: datetime) -> list[str]:
    """Write this run's marker, then clear out what is not resume state; global rank 0 only.

    Returns the names removed. The marker goes first: the output never holds files
    without a marker saying whose they are.
    """
    content = run.marker(started_at).model_dump_json(by_alias=True, indent=2) + "\n"
    write_output_file(output, RUN_MARKER, content.encode())
    return keep_only_resume_state(output)


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths (camelCase, as in the spec) where two hashed specs differ; at most a few."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            found += differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return found[:_SHOWN]
    same = json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)
    return [] if same else [path or "the spec"]
