#!/usr/bin/env bash
# Mutation testing with cargo-mutants: each package given (default: the cores) is
# mutated and tested with its own tests only; prints caught / missed / timeout /
# unviable and the kill rate (caught and timed-out over all viable mutants) per package.
# The missed mutants are listed in target/mutants/PACKAGE/mutants.out/missed.txt.
# Mutants that cannot change behaviour are excluded, each with its reason, in
# .cargo/mutants.toml, which cargo-mutants reads.
#
# Not in CI (it takes minutes to hours a package). Extra arguments for cargo-mutants go
# in MUTANTS_ARGS, e.g. MUTANTS_ARGS="--file crates/bgp/src/bfd.rs".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null 2>&1 || cargo install cargo-mutants --locked
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(strata-wire strata-vswitch strata-router strata-nat strata-slb strata-bgp)
printf '%-16s %7s %7s %7s %9s %10s\n' package caught missed timeout unviable "kill rate"
for package in "${packages[@]}"; do
  out="target/mutants/$package"
  # cargo-mutants exits non-zero when a mutant survives; the table says how many.
  # shellcheck disable=SC2086
  cargo mutants --package "$package" --test-workspace=false \
    --output "$out" ${MUTANTS_ARGS:-} >"$out.log" 2>&1 || true
  python3 - "$package" "$out/mutants.out/outcomes.json" <<'PY'
import json, sys
package, path = sys.argv[1], sys.argv[2]
o = json.load(open(path))
caught, missed, timeout, unviable = o["caught"], o["missed"], o["timeout"], o["unviable"]
viable = caught + missed + timeout
rate = 100.0 * (caught + timeout) / viable if viable else 100.0
print(f"{package:<16} {caught:>7} {missed:>7} {timeout:>7} {unviable:>9} {rate:>9.1f}%")
PY
done
