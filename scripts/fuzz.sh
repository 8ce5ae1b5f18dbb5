#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) each. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it use the
# sanitizer flags it needs.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "== $target (${seconds}s)"
  cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- -max_total_time="$seconds" 2>&1 | grep -E "^(Done|==|INFO: Running)|panicked|ERROR" || true
  [ -z "$(ls artifacts/"$target" 2>/dev/null)" ] || { echo "$target: crash artifacts in fuzz/artifacts/$target"; exit 1; }
done
