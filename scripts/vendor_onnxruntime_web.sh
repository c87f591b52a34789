#!/usr/bin/env bash
# Take onnxruntime-web's browser files from the npm registry into annotate/static/vendor/onnxruntime-web/
# (build time only: the product needs no Node). Usage: bash scripts/vendor_onnxruntime_web.sh 1.31.1
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: $0 VERSION (e.g. 1.31.1)}"
target=annotate/static/vendor/onnxruntime-web
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-web@$version" >/dev/null && tar xzf "onnxruntime-web-$version.tgz")
files=(ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm)
for name in "${files[@]}"; do cp "$work/package/dist/$name" "$target/$name"; done
license="$(cd "$work/package" && node -p 'require("./package.json").license')"
python3 - "$target" "$version" "$license" "${files[@]}" <<'PY'
import hashlib, json, pathlib, sys
target, version, license, *files = sys.argv[1:]
folder = pathlib.Path(target)
record = {"package": "onnxruntime-web", "version": version, "license": license,
          "files": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}}
(folder / "version.json").write_text(json.dumps(record, indent=1) + "\n")
PY
echo "onnxruntime-web $version ($license) → $target; update README.md there if the licence changed"
