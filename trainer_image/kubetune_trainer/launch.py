"""One pod's launcher for a distributed run: `python -m kubetune_trainer.launch [torchrun options] [-- trainer args]`.

Runs torchrun's elastic agent in this process with `-m kubetune_trainer` as the worker,
then speaks for the pod the way a single trainer process would:

* termination message: global rank 0's Result when this pod holds it and the run
  succeeded; on failure, the Result of the rank that failed first (its message names the
  rank and node), or, for a worker killed without a word (a signal, a segfault), one
  built from torch's failure record;
* exit code: that Result's (0, 78 for InvalidConfig/InvalidData, else 1). Plain
  torchrun exits 1 for every worker failure, which would make the Job retry a bad
  config instead of failing it at once.

With JOB_COMPLETION_INDEX set (an Indexed Job) and a c10d endpoint, the pod with index
0 hosts the rendezvous store (`is_host`), so no hostname guessing is involved.

SIGTERM (the pod is stopped): torchrun's agent forwards it to the workers, which save a
checkpoint at their next step boundary (kubetune_trainer.graceful_stop), and waits for
them `--shutdown-timeout` seconds before SIGKILL: torch's default is 30 s, so the launcher
sets it from the pod's grace period ($KUBETUNE_TERMINATION_GRACE_SECONDS) less
`REPORT_MARGIN_S`, which leaves it the time to write the workers' Interrupted result.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubetune_api.protocol import ENV_GRACE_PERIOD, Result
from kubetune_trainer.distributed import ENV_COMPLETION_INDEX, ENV_RANK_RESULTS

RESULT_FILE = "rank-{rank}.json"
REPORT_MARGIN_S = 10


def torchrun_args(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """torchrun's argument list for the launcher's `argv` (options, then `--` trainer args)."""
    argv = list(argv)
    trainer_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, trainer_args = argv[:cut], argv[cut + 1 :]
    index = environ.get(ENV_COMPLETION_INDEX, "").strip()
    dynamic = any(a.startswith("--rdzv-endpoint") or a.startswith("--rdzv_endpoint") for a in argv)
    if index and dynamic and "--standalone" not in argv:
        argv = _with_rdzv_conf(argv, f"is_host={'true' if index == '0' else 'false'}")
    grace = environ.get(ENV_GRACE_PERIOD, "").strip()
    if grace.isdigit() and not any(a.startswith(("--shutdown-timeout", "--shutdown_timeout")) for a in argv):
        argv = [*argv, f"--shutdown-timeout={max(int(grace) - REPORT_MARGIN_S, 1)}"]
    return [*argv, "-m", "kubetune_trainer", *trainer_args]


def _with_rdzv_conf(argv: list[str], entry: str) -> list[str]:
    """Add `entry` (key=value) to --rdzv-conf, keeping an explicit setting of that key."""
    key = entry.split("=", 1)[0]
    for position, arg in enumerate(argv):
        for flag in ("--rdzv-conf=", "--rdzv_conf="):
            if arg.startswith(flag):
                conf = arg[len(flag) :]
                if any(part.split("=", 1)[0] == key for part in conf.split(",") if part):
                    return argv
                return [*argv[:position], f"{flag}{conf},{entry}" if conf else f"{flag}{entry}", *argv[position + 1 :]]
    return [*argv, f"--rdzv-conf={entry}"]


def read_rank_results(folder: Path) -> dict[int, tuple[float, Result]]:
    """rank -> (file time, Result) for every Result a worker left in `folder`."""
    from kubetune_api.protocol import decode_result

    found: dict[int, tuple[float, Result]] = {}
    for path in folder.glob(RESULT_FILE.format(rank="*")):
        rank_text = path.stem.removeprefix("rank-")
        result = decode_result(path.read_text()) if rank_text.isdigit() else None
        if result is not None:
            found[int(rank_text)] = (path.stat().st_mtime, result)
    return found


def pod_result(results: dict[int, tuple[float, Result]], failures: dict[int, Any] | None) -> Result | None:
    """What this pod reports: see the module docstring. None: nothing to say (a successful non-main pod).

    `failures`: torch's ChildFailedError.failures (global rank -> ProcessFailure), None on success.
    """
    from kubetune_api.protocol import failed

    failed_results = [(when, rank, result) for rank, (when, result) in results.items() if result.outcome == "Failed"]
    if failed_results:
        return min(failed_results, key=lambda item: (item[0], item[1]))[2]
    if failures:
        # No worker wrote a Result: killed by a signal, or died in the interpreter. Report
        # the first one (torch's timestamps have one-second resolution), passing over the
        # SIGTERMs the agent sends the survivors once one worker has failed.
        rank, failure = min(
            failures.items(), key=lambda item: (item[1].exitcode == -signal.SIGTERM, item[1].timestamp, item[0])
        )
        code = failure.exitcode
        if code < 0:
            how = f"was killed by signal {-code} ({failure.signal_name()})"
            if -code == 9:
                how += ", often the kernel's out-of-memory killer"
        else:
            how = f"exited with code {code}"
        return failed("TrainingError", f"rank {rank} {how} without a result: {failure.message}")
    if 0 in results:
        return results[0][1]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Launch the workers of this pod and report for it; returns the exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from kubetune_api.protocol import exit_code, failed
    from kubetune_trainer.__main__ import write_result

    args = torchrun_args(sys.argv[1:] if argv is None else argv, os.environ)
    folder = Path(tempfile.mkdtemp(prefix="kubetune-ranks-"))
    os.environ[ENV_RANK_RESULTS] = str(folder)  # the agent copies our environment to its workers
    failures: dict[int, Any] | None = None
    stopped = False
    try:
        run(parse_args(args))
    except ChildFailedError as error:
        failures = dict(error.failures)
    except SignalException as error:
        # The pod is being stopped: the agent passed the signal on and waited for the workers,
        # who saved a checkpoint and left their Interrupted results (or were killed).
        stopped = True
        print(f"kubetune: the launcher got {error.sigval.name}; the workers were told to stop", file=sys.stderr)
    except Exception as error:  # rendezvous timeout, a node that never came, bad torchrun options
        result = failed("TrainingError", f"distributed launch failed: {type(error).__name__}: {error}")
        write_result(result)
        print(f"kubetune: {result.message}", file=sys.stderr)
        return exit_code(result)
    reported: Result | None
    try:
        reported = pod_result(read_rank_results(folder), failures)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if reported is None and stopped:
        reported = failed("Interrupted", "stopped by SIGTERM; no worker left a result (killed before it saved?)")
    if reported is None:
        return 0
    write_result(reported)
    code = exit_code(reported)
    if failures and code == 0:
        code = 1  # a worker failed after writing a Succeeded result (e.g. at exit): still a failure
    return code


if __name__ == "__main__":
    raise SystemExit(main())
