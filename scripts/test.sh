#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# formatting, lints and every test. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: tshark decodes the lab's captures; BIRD, GoBGP and FRR
# are BGP peers; graphviz checks the topology chart's DOT; promtool (prometheus) the
# metrics.
packages=()
command -v tshark >/dev/null 2>&1 || packages+=(tshark)
command -v dot >/dev/null 2>&1 || packages+=(graphviz)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
# The dashboard's browser test: Debian's Chromium driven by playwright-core (npm).
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
# The kernel's own clients in the real-mode tests (namespaces, run as root).
command -v ping >/dev/null 2>&1 || packages+=(iputils-ping)
command -v nft >/dev/null 2>&1 || packages+=(nftables)
command -v curl >/dev/null 2>&1 || packages+=(curl)
# ethtool: the AF_XDP tests turn a peer's checksum offload off, or its GRO on.
command -v ethtool >/dev/null 2>&1 || packages+=(ethtool)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
command -v bird >/dev/null 2>&1 || packages+=(bird2)
command -v gobgpd >/dev/null 2>&1 || packages+=(gobgpd)
[ -x /usr/lib/frr/bgpd ] || packages+=(frr)
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing: ${packages[*]}"
  # As root (CI) directly; otherwise through sudo, keeping DEBIAN_FRONTEND.
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo -E)
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  # The tests start their own daemons on their own loopback addresses; services the
  # packages may have started would hold port 179 on every address.
  if command -v systemctl >/dev/null 2>&1; then
    "${as_root[@]}" systemctl stop bird gobgpd frr prometheus >/dev/null 2>&1 || true
  fi
fi
# schemathesis (a Python package) checks the controller's API against its OpenAPI
# description.
if ! command -v st >/dev/null 2>&1; then
  echo "installing: schemathesis (pip)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -E)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  python3 -m pip install --quiet schemathesis 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages schemathesis
  hash -r
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "installing: playwright-core (npm ci in tests/browser)"
  npm ci --prefix tests/browser --no-audit --no-fund --silent
fi
export STRATA_REQUIRE_TSHARK=1 STRATA_REQUIRE_BIRD=1 STRATA_REQUIRE_GOBGP=1 STRATA_REQUIRE_FRR=1
export STRATA_REQUIRE_SCHEMATHESIS=1 STRATA_REQUIRE_GRAPHVIZ=1 STRATA_REQUIRE_PROMTOOL=1 STRATA_REQUIRE_BROWSER=1
# Tests that build network namespaces (their own, removed after) run as root only; CI is.
if [ "$(id -u)" -eq 0 ]; then export STRATA_REQUIRE_NETNS=1; fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
