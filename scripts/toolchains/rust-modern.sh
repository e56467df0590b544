#!/usr/bin/env bash
# Sets up Kiln's modern Rust toolchain next to Debian's rustc 1.63 (see
# docs/decisions/0008-modern-rust-toolchain.md):
#   1. Debian's rustc-web/cargo-web 1.85 (+ the libraries they need), fetched
#      with `apt-get download` and unpacked with `dpkg -x` into a private
#      prefix: `apt-get install rustc-web` would remove rustc 1.63;
#   2. the wasm32-wasip1 standard library, built once from the orig tarball
#      of Debian's rustc-web source package (library/ and vendor/ only).
#
# Idempotent: a stamp file names the versions; when it matches and the
# compiler runs, the script exits at once. Resumable: downloads are verified
# by checksum and kept; everything else is assembled in `<prefix>.partial`
# and renamed into place only when complete, so an interrupted run never
# leaves a half-built toolchain that looks finished.
#
# Directory: $KILN_TOOLCHAINS_DIR, default /var/cache/kiln/toolchains
# (machine-wide, so every checkout and CI job on the machine reuses it).
# src/config.ts reads the same variable with the same default.
set -euo pipefail

TOOLCHAINS_DIR=${KILN_TOOLCHAINS_DIR:-/var/cache/kiln/toolchains}
DEBIAN_VERSION='1.85.0+dfsg3-1~deb12u3'
RUST_VERSION='1.85.0'
NAME="rust-${RUST_VERSION}"
PREFIX="$TOOLCHAINS_DIR/$NAME"
STAMP="$PREFIX/kiln-toolchain.json"
TARGET='wasm32-wasip1'
# Exact versions: what TOOLCHAINS.md measured. A newer rustc-web (1.96 is
# offered) needs its own source tarball and has not been tried.
PACKAGES=(
  "rustc-web=$DEBIAN_VERSION"
  "cargo-web=$DEBIAN_VERSION"
  "libstd-rust-web-1.85=$DEBIAN_VERSION"
  "libstd-rust-web-dev=$DEBIAN_VERSION"
  'libllvm19=1:19.1.7-3~deb12u1'
  'libpcre3=2:8.39-15'
)
DEBIAN_MIRROR=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ORIG_TARBALL='rustc-web_1.85.0+dfsg3.orig.tar.xz'
ORIG_URL="$DEBIAN_MIRROR/pool/main/r/rustc-web/rustc-web_1.85.0%2bdfsg3.orig.tar.xz"
ORIG_SHA256='8cfaf52ab168a12c3082b5956bcc16c8969d8791b2fe54ed5192672b25518af2'
WASI_LIBC_DIR=/usr/lib/wasm32-wasi

say() { echo "kiln setup: rust $RUST_VERSION: $*" >&2; }
# As root, apt would hand downloads to its _apt user, which cannot write here (and warns).
APT_USER=()
[[ $(id -u) -eq 0 ]] && APT_USER=(-o APT::Sandbox::User=root)
started=$SECONDS

stamp_content() {
  printf '{"name":"%s","rustVersion":"%s","debianVersion":"%s","target":"%s","rustc":"%s","cargo":"%s","setupSeconds":%s}\n' \
    "$NAME" "$RUST_VERSION" "$DEBIAN_VERSION" "$TARGET" "$1" "$2" "$3"
}

# The stamp is valid when it names these versions and the compiler answers with the same one.
toolchain_ready() {
  [[ -f $STAMP ]] || return 1
  grep -q "\"debianVersion\":\"$DEBIAN_VERSION\"" "$STAMP" || return 1
  local rustc_version
  rustc_version=$(run_in "$PREFIX" usr/bin/rustc -V 2>/dev/null) || return 1
  grep -qF "\"rustc\":\"$rustc_version\"" "$STAMP" || return 1
  ls "$PREFIX/usr/lib/rustlib/$TARGET/lib/"libstd-*.rlib >/dev/null 2>&1
}

# Runs a binary of the prefix with the prefix's shared libraries.
run_in() {
  local prefix=$1 binary=$2
  shift 2
  LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu" "$prefix/$binary" "$@"
}

if toolchain_ready; then
  exit 0
fi

if ! mkdir -p "$TOOLCHAINS_DIR" 2>/dev/null || [[ ! -w $TOOLCHAINS_DIR ]]; then
  say "$TOOLCHAINS_DIR is not writable; set it up once as root:"
  say "  sudo KILN_TOOLCHAINS_DIR=$TOOLCHAINS_DIR $(realpath "$0")"
  say "or point KILN_TOOLCHAINS_DIR at a directory you own"
  exit 1
fi
for tool in wasm-ld xz dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { say "$tool is missing (scripts/setup.sh installs it)"; exit 1; }
done
[[ -f $WASI_LIBC_DIR/libc.a ]] || { say "wasi-libc is missing (scripts/setup.sh installs it)"; exit 1; }

DOWNLOADS="$TOOLCHAINS_DIR/downloads/$NAME"
WORK="$PREFIX.partial"
mkdir -p "$DOWNLOADS"

download_packages() {
  say "downloading Debian packages (~96 MB)"
  local uris
  uris=$(cd "$DOWNLOADS" && apt-get download --print-uris "${PACKAGES[@]}" 2>/dev/null) || {
    apt-get update >/dev/null 2>&1 || true
    uris=$(cd "$DOWNLOADS" && apt-get download --print-uris "${PACKAGES[@]}")
  }
  # Each line: 'url' file size SHA256:hash. Only missing or corrupt files are fetched.
  while read -r url file _size checksum; do
    url=${url//\'/}
    if [[ -f $DOWNLOADS/$file ]] && echo "${checksum#SHA256:}  $DOWNLOADS/$file" | sha256sum -c --quiet - 2>/dev/null; then continue; fi
    rm -f "$DOWNLOADS/$file"
    /usr/lib/apt/apt-helper "${APT_USER[@]}" download-file "$url" "$DOWNLOADS/$file.part" "$checksum" >/dev/null
    mv "$DOWNLOADS/$file.part" "$DOWNLOADS/$file"
  done <<<"$uris"
}

download_source() {
  local tarball="$DOWNLOADS/$ORIG_TARBALL"
  if [[ -f $tarball ]] && echo "$ORIG_SHA256  $tarball" | sha256sum -c --quiet - 2>/dev/null; then return; fi
  say "downloading the rustc-web orig source tarball (~83 MB)"
  rm -f "$tarball"
  /usr/lib/apt/apt-helper "${APT_USER[@]}" download-file "$ORIG_URL" "$tarball.part" "SHA256:$ORIG_SHA256" >/dev/null
  mv "$tarball.part" "$tarball"
}

unpack_packages() {
  say "unpacking the compiler into $WORK"
  local deb
  for deb in "$DOWNLOADS"/*.deb; do dpkg-deb -x "$deb" "$WORK"; done
  # Documentation and manual pages are not needed to build.
  rm -rf "$WORK/usr/share/doc" "$WORK/usr/share/man"
}

# Only library/ (std's sources) and vendor/ (the crates std depends on, plus
# crates Kiln's own fixtures reuse) leave the tarball.
unpack_source() {
  say "extracting library/ and vendor/ from the source tarball"
  local source="$WORK/usr/lib/rustlib/src/rust"
  mkdir -p "$source"
  tar -xJf "$DOWNLOADS/$ORIG_TARBALL" -C "$source" --strip-components=1 --no-wildcards-match-slash --wildcards '*/library' '*/vendor'
  [[ -d $source/vendor/windows-sys-0.59.0 ]] || write_windows_sys_stub "$source/vendor/windows-sys-0.59.0" "$source/library/Cargo.lock"
}

# Debian's dfsg tarball drops windows-sys from vendor/, but dlmalloc names it
# (for Windows only) and cargo still wants the package present, with the
# checksum library/Cargo.lock records.
write_windows_sys_stub() {
  local crate=$1 checksum
  checksum=$(awk '/^name = "windows-sys"$/ { found = 1; next } found && /^version = / { if ($3 != "\"0.59.0\"") found = 0; next } found && /^checksum = / { gsub(/"/, "", $3); print $3; exit }' "$2")
  [[ -n $checksum ]] || { say "library/Cargo.lock records no windows-sys 0.59.0"; exit 1; }
  mkdir -p "$crate/src"
  cat >"$crate/Cargo.toml" <<'EOF'
[package]
name = "windows-sys"
version = "0.59.0"
edition = "2021"
description = "Kiln's empty stand-in: Debian's tarball drops windows-sys; no Kiln target uses it"
license = "MIT OR Apache-2.0"

[features]
default = []
Win32 = []
Win32_Foundation = []
Win32_System = []
Win32_System_Memory = []
Win32_System_Threading = []
Win32_System_SystemInformation = []
EOF
  echo '#![no_std]' >"$crate/src/lib.rs"
  printf '{"files":{},"package":"%s"}\n' "$checksum" >"$crate/.cargo-checksum.json"
}

build_std() {
  say "building the $TARGET standard library (about 1-4 minutes)"
  local scratch="$WORK/.std-build"
  local source="$WORK/usr/lib/rustlib/src/rust"
  mkdir -p "$scratch/src" "$scratch/.cargo"
  cat >"$scratch/Cargo.toml" <<'EOF'
[package]
name = "kiln_std_scratch"
version = "0.0.0"
edition = "2021"

[lib]
path = "src/lib.rs"
EOF
  echo '' >"$scratch/src/lib.rs"
  cat >"$scratch/.cargo/config.toml" <<EOF
[source.crates-io]
replace-with = "rust-vendor"
[source.rust-vendor]
directory = "$source/vendor"
EOF
  # -Cembed-bitcode=yes: crates built with lto = true (the official
  # proxy-wasm SDK's profile) need bitcode in std's rlibs.
  (
    cd "$scratch"
    export LD_LIBRARY_PATH="$WORK/usr/lib/x86_64-linux-gnu:$WORK/lib/x86_64-linux-gnu"
    export RUSTC="$WORK/usr/bin/rustc" RUSTC_BOOTSTRAP=1 RUSTFLAGS='-Cembed-bitcode=yes'
    export CARGO_HOME="$scratch/.cargo-home" CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld CARGO_TERM_COLOR=never
    "$WORK/usr/bin/cargo" build --release --offline --target "$TARGET" -Zbuild-std=std,panic_abort 2>&1 |
      grep -E '^(error|warning: unused)|Finished' >&2 || true
  )
  local lib="$WORK/usr/lib/rustlib/$TARGET/lib"
  mkdir -p "$lib/self-contained"
  find "$scratch/target/$TARGET/release/deps" -name 'lib*.rlib' ! -name 'libkiln_std_scratch-*' -exec cp {} "$lib/" \;
  ls "$lib"/libstd-*.rlib >/dev/null 2>&1 || { say "the standard library build failed"; exit 1; }
  # rustc links wasip1 programs "self-contained": it takes the C start files and libc from here.
  cp "$WASI_LIBC_DIR/crt1-command.o" "$WASI_LIBC_DIR/crt1-reactor.o" "$WASI_LIBC_DIR/libc.a" "$lib/self-contained/"
  rm -rf "$scratch"
}

smoke_test() {
  say "checking that a $TARGET program builds"
  local probe
  probe=$(mktemp -d)
  echo 'fn main() { println!("{:?}", std::collections::HashMap::<u8, u8>::new()); }' >"$probe/main.rs"
  LD_LIBRARY_PATH="$WORK/usr/lib/x86_64-linux-gnu:$WORK/lib/x86_64-linux-gnu" \
    "$WORK/usr/bin/rustc" --edition 2021 --target "$TARGET" -O -C linker=wasm-ld "$probe/main.rs" -o "$probe/main.wasm"
  [[ -s $probe/main.wasm ]] || { say "the smoke test produced nothing"; exit 1; }
  rm -rf "$probe"
}

download_packages
download_source
rm -rf "$WORK"
mkdir -p "$WORK"
unpack_packages
unpack_source
build_std
smoke_test
rustc_version=$(run_in "$WORK" usr/bin/rustc -V)
cargo_version=$(run_in "$WORK" usr/bin/cargo -V)
stamp_content "$rustc_version" "$cargo_version" "$((SECONDS - started))" >"$WORK/kiln-toolchain.json"
rm -rf "$PREFIX"
mv "$WORK" "$PREFIX"
# The packages are unpacked and the tarball extracted: only the stamp's versions matter from here.
rm -rf "$DOWNLOADS"
say "ready in $((SECONDS - started)) s: $rustc_version ($PREFIX)"
