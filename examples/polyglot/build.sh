#!/usr/bin/env bash
# Build the Python and JavaScript agents of this example into components in
# dist/, from the repository's wit/ package. Installs the pinned tools when
# missing: componentize-py (PyPI) and componentize-js (npm).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
wit="$here/../../wit"
mkdir -p dist

if ! command -v componentize-py >/dev/null || [ "$(componentize-py --version | awk '{print $2}')" != "0.25.1" ]; then
  echo "== installing componentize-py 0.25.1 (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore componentize-py==0.25.1
fi
echo "== python: python/app.py -> dist/py-counter.wasm"
(cd python && componentize-py -d "$wit" -w agent componentize app -o "$here/dist/py-counter.wasm")

echo "== javascript: js/agent.js -> dist/js-slugger.wasm"
(
  cd js
  if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
    echo "== installing componentize-js (npm)"
    npm ci --silent --no-audit --no-fund
  fi
  rm -rf wit && cp -r "$wit" wit
  node build.mjs "$here/dist/js-slugger.wasm"
  rm -rf wit
)
