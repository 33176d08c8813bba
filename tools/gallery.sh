#!/usr/bin/env bash
# Renders the README's gallery into tools/gallery/ and records each command with its wall time
# in tools/gallery/times.txt. Fetches the VGG16 weights first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/fetch_weights.py >/dev/null
cargo build --release -p nst-cli
out=tools/gallery
: > "$out/times.txt"
d=tests/data
common=(--content "$d/tubingen.jpg" --size 384 --iters 250 --threads 2 --quiet)
render() {
  local name=$1; shift
  local start=$(date +%s.%N)
  ./target/release/nst transfer "${common[@]}" "$@" --output "$out/$name.jpg"
  local secs=$(echo "$(date +%s.%N) - $start" | bc)
  printf '%s\t%.0f\tnst transfer --content %s/tubingen.jpg --size 384 --iters 250 %s --output %s.jpg\n' \
    "$name" "$secs" "$d" "$*" "$name" >> "$out/times.txt"
}
render starry_night --style "$d/starry_night.jpg" \
  --progress-grid "$out/starry_night_grid.png" --plot "$out/starry_night_loss.svg"
render the_scream --style "$d/the_scream.jpg"
render shipwreck --style "$d/shipwreck.jpg"
render starry_night_original_colors --style "$d/starry_night.jpg" --original-colors
render starry_night_luminance --style "$d/starry_night.jpg" --preserve-colors luminance
render starry_night_histogram --style "$d/starry_night.jpg" --preserve-colors histogram
render blend_starry_scream --style "$d/starry_night.jpg" --style "$d/the_scream.jpg" --style-blend 0.5,0.5
# One print-size result, coarse to fine (its own options, so not through render()).
start=$(date +%s.%N)
./target/release/nst transfer --content "$d/tubingen.jpg" --size 2048 --scales auto --iters 150 \
  --style-scale 0.5 --style "$d/starry_night.jpg" --threads 2 --quiet --output "$out/starry_night_2048.jpg"
secs=$(echo "$(date +%s.%N) - $start" | bc)
printf 'starry_night_2048\t%.0f\tnst transfer --content %s/tubingen.jpg --size 2048 --scales auto --iters 150 --style-scale 0.5 --style %s/starry_night.jpg --output starry_night_2048.jpg\n' \
  "$secs" "$d" "$d" >> "$out/times.txt"
