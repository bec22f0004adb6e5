"""Data-parallel scaling of the trainer container: 1 process against N processes (torchrun, gloo on CPU).

Run (from the repository root, in the project venv):

    HF_HUB_OFFLINE=1 python bench/ddp_scaling.py            # --procs 2 --rows 1024 --repeats 2

Both runs are the real container entrypoints on the same tiny BERT (the test suite's,
hidden 32 but 4 layers and 128 tokens here so compute outweighs the all-reduce), the
same data and the same global batch: `python -m kubetune_trainer` with batch B, and the
launcher `python -m kubetune_trainer.launch --standalone --nproc-per-node=N` (the
operator's command for N GPUs) with batch B/N per process. Throughput is transformers'
`train_samples_per_second` from the Result (global samples over the training loop only;
model load and tokenisation are not counted). Each DDP process gets OMP_NUM_THREADS =
cores / processes and the single process all cores (`--single-threads` to change), so
both use the same cores; the ratio says what the gradient all-reduce and the second
process cost or gain on this machine, not what GPUs would do. On a machine shared with
other work, OpenMP threads spin against each other: compare with --single-threads 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "trainer"))

from runtime_helpers import toy_rows, write_csv  # noqa: E402
from tiny_models import build_bert  # noqa: E402


def build_model(path: Path) -> Path:
    """The tests' tiny BERT tokenizer and config, deeper and wider, so a step is mostly compute."""
    import torch
    from transformers import BertConfig, BertForPreTraining

    build_bert(path)
    config = BertConfig.from_pretrained(path)
    config.update({"num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4})
    torch.manual_seed(0)
    BertForPreTraining(config).save_pretrained(path)
    return path


def run(command: list[str], job: dict[str, Any], work: Path, threads: int) -> float:
    """Run one trainer command; its train_samples_per_second."""
    config = work / "job.json"
    config.write_text(json.dumps(job))
    log = work / "termination-log"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "KUBETUNE_TERMINATION_LOG": str(log),
    }
    done = subprocess.run([*command, "--config", str(config)], env=env, capture_output=True, text=True, cwd=work)
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(log.read_text())
    return float(result["metrics"]["train_samples_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=2, help="processes of the data-parallel run")
    parser.add_argument("--rows", type=int, default=1024, help="training rows")
    parser.add_argument("--batch", type=int, default=16, help="global batch size")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration (median)")
    parser.add_argument(
        "--single-threads", type=int, default=0, help="OMP threads of the 1-process run (default: all cores)"
    )
    args = parser.parse_args()
    if args.batch % args.procs:
        raise SystemExit("--batch must be divisible by --procs")
    cores = os.cpu_count() or 1
    single_threads = args.single_threads or cores

    with tempfile.TemporaryDirectory(prefix="kubetune-ddp-bench-") as tmp:
        root = Path(tmp)
        model = build_model(root / "bert")
        # Long rows (the sentences repeated) so every sample is 128 tokens of work.
        rows = [{**row, "text": " ".join([row["text"]] * 20)} for row in toy_rows(args.rows)]
        train = write_csv(root / "train.csv", rows)

        def job(batch: int, name: str) -> dict[str, Any]:
            return {
                "base": {"model": str(model)},
                "data": {"train": str(train)},
                "maxLength": 128,
                "trainingArgs": {
                    "per_device_train_batch_size": batch,
                    "num_train_epochs": 1,
                    "save_strategy": "no",
                    "logging_steps": 10,
                    "seed": 1,
                },
                "output": {"uri": str(root / "out" / name)},
            }

        single_cmd = [sys.executable, "-m", "kubetune_trainer"]
        ddp_cmd = [sys.executable, "-m", "kubetune_trainer.launch", "--standalone", f"--nproc-per-node={args.procs}"]
        single, ddp = [], []
        for repeat in range(args.repeats):
            work = root / f"run-{repeat}"
            (work / "1").mkdir(parents=True)
            (work / "n").mkdir(parents=True)
            single.append(run(single_cmd, job(args.batch, f"1-{repeat}"), work / "1", threads=single_threads))
            ddp_cmd_full = [*ddp_cmd, "--"]
            ddp.append(
                run(ddp_cmd_full, job(args.batch // args.procs, f"n-{repeat}"), work / "n", max(1, cores // args.procs))
            )
        one, many = statistics.median(single), statistics.median(ddp)
        print(
            f"cores: {cores}, rows: {args.rows}, global batch: {args.batch}, repeats: {args.repeats}, "
            f"threads: {single_threads} (1 process), {max(1, cores // args.procs)} per process (DDP)"
        )
        print(f"1 process:            {one:8.1f} samples/s  (runs: {', '.join(f'{v:.1f}' for v in single)})")
        print(f"{args.procs} processes (DDP):   {many:8.1f} samples/s  (runs: {', '.join(f'{v:.1f}' for v in ddp)})")
        print(f"ratio {args.procs}/1: {many / one:.2f}")


if __name__ == "__main__":
    main()
