"""Where the operator's CPU goes, from py-spy's collapsed stacks (`operator_scale.py --profile FILE`).

    python bench/profile_summary.py FILE [--jobs 500] [--top 25]

Each sample is put in one category, found by walking its stack from the innermost frame
outwards to the first frame that names one (so `json.loads` called by Kopf's watcher is
JSON, a deep copy made by Kopf is Kopf):

- json: json (de)serialisation, whoever calls it
- logging: the logging module and Kopf's object loggers (records built, filtered, formatted)
- aiohttp: the HTTP client (requests, responses, the watch streams' chunk reading)
- status diff: kubetune's status derivation and diff (status, conditions, merge_patch)
- indices: Kopf's index machinery and kubetune's index functions
- kubetune: the rest of kubetune's code (reconcile, views, builders, validation)
- kopf: the rest of Kopf (watching, queueing, handler selection, invocation, patches)
- asyncio: only the event loop itself (selector, scheduling) on the stack

Printed: the share of each category and its milliseconds per job (the share times the
operator's measured CPU per job, when given with --cpu-ms), the innermost frames, and the
inclusive share of the busiest functions.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# The loop waiting in epoll. py-spy counts part of that wait as active (the thread is not
# sleeping in Python), so it is shown apart and left out of the milliseconds per job.
SELECT = "epoll wait"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")

# (category, predicate on (function, file)); the first that matches, from the innermost frame out.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("json", ("json/",)),
    ("logging", ("logging/", "kopf/_core/actions/loggers.py", "kopf/_core/engines/posting.py")),
    ("aiohttp", ("aiohttp/", "yarl/", "multidict/", "asyncio/streams.py", "asyncio/sslproto.py")),
    ("status diff", ("kubetune_operator/status.py", "kubetune_operator/conditions.py", "merge_patch.py")),
    ("indices", ("kopf/_core/engines/indexing.py", "kubetune_operator/indices.py")),
    ("kubetune", ("kubetune_operator/", "kubetune_api/")),
    ("kopf", ("kopf/",)),
]


def in_loop(stack: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The frames run by the event loop: what is above `_run_once` (below it are runpy,
    click and `kopf run`, on every stack, which would make every sample Kopf's)."""
    for depth in range(len(stack) - 1, -1, -1):
        if stack[depth][0].endswith("_run_once"):
            return stack[depth + 1 :]
    return stack


def category(stack: list[tuple[str, str]]) -> str:
    frames = in_loop(stack)
    if frames and frames[-1][0].endswith(".select"):
        return SELECT
    for _func, file in reversed(frames):
        for name, prefixes in RULES:
            if any(prefix in file for prefix in prefixes):
                return name
    return "asyncio" if frames else "other"


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    samples = []
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        frames = []
        for frame in stack_text.split(";"):
            match = FRAME.match(frame)
            frames.append((match["func"], match["file"]) if match else (frame, ""))
        samples.append((frames, int(count)))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--cpu-ms", type=float, help="the operator's CPU per job (ms), to split into categories")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    samples = parse(args.file)
    total = sum(count for _, count in samples)
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in samples:
        categories[category(stack)] += count
        func, file = stack[-1]
        leaves[f"{func} ({file})"] += count
        for name in {f"{func} ({file})" for func, file in in_loop(stack)}:
            inclusive[name] += count

    busy = total - categories[SELECT]
    print(f"samples: {total}, {busy} outside the epoll wait")
    print("\nby category (innermost frame that names one); shares of the samples outside the epoll wait:")
    for name, count in categories.most_common():
        if name == SELECT:
            continue
        share = count / busy
        ms = f"  {share * args.cpu_ms:5.1f} ms/job" if args.cpu_ms else ""
        print(f"  {name:12s} {share:6.1%}{ms}")
    print(f"  ({SELECT}: {categories[SELECT] / total:.1%} of all samples)")
    print(f"\ninnermost frames (self), top {args.top}:")
    for name, count in leaves.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    print(f"\nfunctions on the stack (inclusive), top {args.top} below the event loop:")
    shown = 0
    for name, count in inclusive.most_common():
        if name.startswith("Handle._run "):  # every callback the loop runs
            continue
        print(f"  {count / total:6.1%}  {name}")
        shown += 1
        if shown == args.top:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
