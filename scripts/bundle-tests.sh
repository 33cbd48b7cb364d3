#!/usr/bin/env bash
# Bundle test files into self-contained ES modules (tap included) so they run on a node that has
# Node but not this project's dev toolchain, e.g. a pure cgroup v2 host:
#   scripts/bundle-tests.sh [NAME...]     (NAME: test/NAME.test.ts; default: the runtime's set)
# The bundles go to test-bundles/ (git- and eslint-ignored), directly in the checkout: they find
# native/build, dist/ and bin/ one level up, as the tests do from test/. test-bundles/node_modules
# gets the native packages the bundles load at run time (koffi, better-sqlite3) and tap's one
# optional dependency. On the other node, with the checkout, `npm run build`'s dist/ and
# native/build/ in place, and busybox-static at /bin/busybox:
#   for f in test-bundles/*.mjs; do node "$f"; done      (TAP on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
out=test-bundles
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(cgroups-v2 cgroups-v2-devices cgroups-v2-layout cgroups-convert oci-runtime oci-runtime-more
  native-spawn native-zygote oci-cli oci-crash oci-seccomp oci-caps engine-privileged bench-isolation)
mkdir -p "$out/node_modules"
for n in "${names[@]}"; do
  npx esbuild "test/$n.test.ts" --bundle --platform=node --format=esm --target=node20 --outfile="$out/$n.mjs" \
    --external:koffi --external:better-sqlite3 --log-level=error \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
done
for m in koffi @koromix/koffi-linux-x64 better-sqlite3 bindings file-uri-to-path \
  react-element-to-jsx-string @base2/pretty-print-object is-plain-object react-is react; do
  [ -d "node_modules/$m" ] || continue
  mkdir -p "$out/node_modules/$(dirname "$m")"
  rm -rf "${out:?}/node_modules/$m"
  cp -r "node_modules/$m" "$out/node_modules/$m"
done
rm -rf "$out/node_modules/better-sqlite3/deps" "$out/node_modules/better-sqlite3/src"
echo "bundled ${#names[@]} test files into $out"
