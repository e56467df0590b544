#!/usr/bin/env bash
# Installs the JavaScript/TypeScript component toolchain (componentize-js,
# jco, preview2-shim, esbuild: ~390 MB) into toolchains/js, apart from Kiln's
# own node_modules so `npm install` stays small, and derives the
# wasi:http/proxy@0.2.10 WIT that the fetch-event style needs (see
# docs/decisions/0016). Idempotent: does nothing when the lock file's
# packages and the WIT are already there. Run by scripts/setup.sh.
#   KILN_JS_TOOLCHAIN_DIR  install elsewhere (default: toolchains/js of this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=$PWD/toolchains/js
prefix=${KILN_JS_TOOLCHAIN_DIR:-$source_dir}
say() { echo "kiln setup: $*" >&2; }

if [[ $prefix != "$source_dir" ]]; then
  mkdir -p "$prefix"
  cp "$source_dir/package.json" "$source_dir/package-lock.json" "$prefix/"
fi

if [[ ! -f $prefix/node_modules/.package-lock.json || $prefix/package-lock.json -nt $prefix/node_modules/.package-lock.json ]]; then
  say "installing the JavaScript component toolchain into $prefix (about 390 MB, once)"
  npm ci --prefix "$prefix" --no-audit --no-fund --loglevel=error >&2
fi

# StarlingMonkey (componentize-js 0.23) binds the fetch event to
# wasi:http@0.2.10; jco ships the 0.2.12 WIT of the same interfaces (0.2
# patch releases change no signature), so the 0.2.10 packages are those files
# with the version rewritten.
wit=$prefix/wit
builtin=$prefix/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12
if [[ ! -f $wit/.complete || $wit/.complete -ot $prefix/node_modules/.package-lock.json ]]; then
  rm -rf "$wit"
  mkdir -p "$wit/deps"
  for package in cli clocks filesystem http io random sockets; do
    mkdir -p "$wit/deps/$package"
    sed 's/@0\.2\.12\b/@0.2.10/g' "$builtin/wasi-$package/package.wit" >"$wit/deps/$package/package.wit"
  done
  cat >"$wit/world.wit" <<'WIT'
package kiln:app;

/// What a Kiln http-component built from JavaScript or TypeScript is: the
/// wasi:http/proxy world (incoming handler exported; clocks, random, stdio and
/// outgoing HTTP imported).
world handler {
  include wasi:http/proxy@0.2.10;
}
WIT
  touch "$wit/.complete"
fi
