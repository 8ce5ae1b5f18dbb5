#!/usr/bin/env bash
# The lab at 10x, 100x and 200x the POC's size (about 21 nodes): labs/datacenter.toml
# with SCALE hosts of 20 VMs and SCALE tenants (8 Muxes, the POC's routers, client,
# controller and Internet host), booted and run through its scenarios by the release
# `strata lab run`. Prints wall time and peak memory, in all and per node.
#
#   scripts/bench-lab-scale.sh            # 10 100 200
#   SCALES="100" scripts/bench-lab-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p strata
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '%-6s %6s %9s %10s %12s %12s\n' scale nodes wall_s peak_MiB ms/node KiB/node
for h in ${SCALES:-10 100 200}; do
  vip="192.168.$((128 + h / 250)).$((h % 250 + 1))"
  sed -e "s/^copies = 100\$/copies = $h/" \
      -e "s/^copies = 2000\$/copies = $((h * 20))/" \
      -e "s/% 100 + 1}/% $h + 1}/" \
      -e "s/192\.168\.128\.101/$vip/g" \
      -e "s/for tenant 100/for tenant $h/" \
      -e "s/VM2000/VM$((h * 20))/g" \
      -e "s/\"Host100\"/\"Host$h\"/" \
      labs/datacenter.toml >"$dir/scale-$h.toml"
  nodes=$((h * 21 + 8 + 5))
  /usr/bin/time -f '%e %M' -o "$dir/time" target/release/strata lab run "$dir/scale-$h.toml" >"$dir/out" 2>&1 ||
    { cat "$dir/out"; exit 1; }
  read -r wall kib <"$dir/time"
  awk -v s="$h" -v n="$nodes" -v w="$wall" -v k="$kib" \
    'BEGIN { printf "%-6s %6d %9.2f %10.0f %12.2f %12.0f\n", s "x", n, w, k / 1024, 1000 * w / n, k / n }'
done
