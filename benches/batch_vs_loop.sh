#!/usr/bin/env bash
# `nst batch` over 3 contents × 2 styles against a shell loop of `nst transfer` over the same
# six pairs, same options, timed whole; checks the outputs are byte-identical.
#   bash benches/batch_vs_loop.sh [SIZE] [ITERS]      (defaults 256, 50)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-256}; iters=${2:-50}
cargo build --release -q -p nst-cli
nst=./target/release/nst
d=tests/data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/contents" "$work/batch" "$work/loop"
cp "$d/tubingen.jpg" "$d/shipwreck.jpg" "$d/the_scream.jpg" "$work/contents/"
styles=("$d/starry_night.jpg" "$d/the_scream.jpg")
opts=(--size "$size" --iters "$iters" --threads 2 --quiet)

start=$(date +%s.%N)
"$nst" batch --content "$work/contents" --style "${styles[@]}" --out-dir "$work/batch" "${opts[@]}"
batch=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
for c in "$work"/contents/*; do
  for s in "${styles[@]}"; do
    name="$(basename "${c%.*}")__$(basename "${s%.*}").png"
    "$nst" transfer --content "$c" --style "$s" --output "$work/loop/$name" "${opts[@]}"
  done
done
loop=$(echo "$(date +%s.%N) - $start" | bc)

for f in "$work"/loop/*.png; do cmp "$f" "$work/batch/$(basename "$f")"; done
printf 'size %s, %s evaluations, 6 pairs: batch %.1f s, loop %.1f s, batch/loop %.3f (outputs identical)\n' \
  "$size" "$iters" "$batch" "$loop" "$(echo "$batch / $loop" | bc -l)"
