#!/usr/bin/env bash
# Build the Python and JavaScript agents of this example into components in
# dist/. Installs the pinned tools when missing: componentize-py (PyPI) and
# componentize-js (npm).
#
#   py-counter, js-slugger  world `agent` of the repository's wit/ package
#   py-reader               world `agent-http` of wit/polyglot.wit (files, HTTP)
#   js-reader               world `agent-io` of wit/polyglot.wit (files, HTTP)
#
# The worlds of wit/polyglot.wit include `ensemble:agent/agent`: this script
# stages wit/ with a copy of ../../wit/agent.wit in its deps/ (dist/wit/).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
wit="$here/../../wit"
mkdir -p dist
rm -rf dist/wit && cp -r wit dist/wit && cp "$wit/agent.wit" dist/wit/deps/agent.wit
io_wit="$here/dist/wit"

if ! command -v componentize-py >/dev/null || [ "$(componentize-py --version | awk '{print $2}')" != "0.25.1" ]; then
  echo "== installing componentize-py 0.25.1 (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore componentize-py==0.25.1
fi
echo "== python: python/app.py -> dist/py-counter.wasm"
(cd python && componentize-py -d "$wit" -w agent componentize app -o "$here/dist/py-counter.wasm")
echo "== python: python-reader/app.py -> dist/py-reader.wasm"
(cd python-reader && componentize-py -d "$io_wit" -w agent-http componentize app -o "$here/dist/py-reader.wasm")

echo "== javascript: js/agent.js -> dist/js-slugger.wasm, js/reader.js -> dist/js-reader.wasm"
(
  cd js
  if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
    echo "== installing componentize-js (npm)"
    npm ci --silent --no-audit --no-fund
  fi
  # componentize-js reads WIT only from under its working directory.
  rm -rf wit wit-io && cp -r "$wit" wit && cp -r "$io_wit" wit-io
  node build.mjs agent.js wit agent "$here/dist/js-slugger.wasm"
  node build.mjs reader.js wit-io agent-io "$here/dist/js-reader.wasm" http
  rm -rf wit wit-io
)
