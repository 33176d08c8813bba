#!/usr/bin/env bash
# Runs every test of the project: the Python tools' tests, then the Rust workspace's, and ends
# with one line counting them all. Fetches the VGG16 weights first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/fetch_weights.py
log=$(mktemp)
trap 'rm -f "$log"' EXIT
python3 tools/test_tools.py 2>&1 | tee -a "$log"
cargo test --release --workspace 2>&1 | tee -a "$log"
# The engine's kernel and gradient tests on each GEMM backend by name: the run above used this
# processor's default one (crates/tensor/src/kernels/gemm.rs), which depends on the processor.
for backend in matrixmultiply gemm; do
  NST_GEMM=$backend cargo test --release -p nst-tensor --test kernels --test gradcheck 2>&1 | tee -a "$log"
done
# Totals: cargo's "test result: ok. N passed; M failed" lines and unittest's "Ran N tests".
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^Ran [0-9]+ tests?/ { p += $2 }
  END { printf "all tests: %d passed, %d failed\n", p, f }
' "$log"
