#!/usr/bin/env bash
# The main job on the bundled demo images: Tübingen in the style of The Starry Night, 512 px,
# written to out/demo.png. Fetches the VGG16 weights first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/fetch_weights.py
mkdir -p out
cargo run --release -p nst-cli -- transfer \
  --content tests/data/tubingen.jpg --style tests/data/starry_night.jpg \
  --output out/demo.png "$@"
