#!/usr/bin/env bash
# Idempotent set-up for `npm start` and `npm test`: installs whatever is
# missing, and does nothing (quickly) when everything is there.
#   scripts/setup.sh          what `kiln serve` needs (toolchains, sandbox)
#   scripts/setup.sh --test   plus the real servers the test suite starts
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PACKAGES=(
  bubblewrap runsc libseccomp-dev gcc libc6-dev
  clang lld wasi-libc libclang-rt-14-dev-wasm32
  rustc cargo libstd-rust-dev-wasm32
  librust-serde-dev librust-serde-derive-dev librust-serde-json-dev
  binaryen wabt
  xz-utils libc++-14-dev-wasm32 libc++abi-14-dev-wasm32
)
# chromium (+ its driver) runs the web UI's end-to-end tests (test/web), driven by playwright-core.
TEST_PACKAGES=(postgresql-15 radosgw ceph-mon ceph-osd ceph-common chromium chromium-driver strace)

packages=("${RUNTIME_PACKAGES[@]}")
[[ ${1:-} == --test ]] && packages+=("${TEST_PACKAGES[@]}")

say() { echo "kiln setup: $*" >&2; }

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
  command="apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) -eq 0 && -r /etc/debian_version ]]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when an install actually fails on them.
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/kiln-apt.log 2>&1; then
      apt-get update >>/tmp/kiln-apt.log 2>&1
      apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/kiln-apt.log 2>&1 || {
        tail -n 30 /tmp/kiln-apt.log >&2
        say "apt-get failed; full log in /tmp/kiln-apt.log"
        exit 1
      }
    fi
  else
    say "missing Debian packages: ${missing[*]}"
    say "run as root:  $command"
    exit 1
  fi
fi

# Modern Rust next to Debian's 1.63 (idempotent; quick when already set up).
scripts/toolchains/rust-modern.sh

# npm packages: install when node_modules is absent or older than the lock file.
# `npm install`, not `npm ci`: the registry this machine kind reaches lacks the
# other platforms' optional Wizer binaries, which `npm ci` insists on; install
# still follows package-lock.json for everything it can fetch.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm packages"
  npm install --no-audit --no-fund --loglevel=error >&2
fi

# The web UI bundle (served by `kiln serve` at /): built when missing or stale.
bash scripts/build-ui.sh

# The JavaScript/TypeScript component toolchain lives apart (toolchains/js).
bash scripts/install-js-toolchain.sh
