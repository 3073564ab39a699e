#!/usr/bin/env bash
# Installs the third-party MCP servers used by tests into .ci/peers.
# Idempotent and safe to run concurrently (the tests call it too).
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/peers"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
# The MCP inspector's CLI is a third-party client for `opsbot serve --http`.
if [ ! -x "$dir/node_modules/.bin/mcp-server-filesystem" ] || [ ! -x "$dir/node_modules/.bin/mcp-server-everything" ] \
  || [ ! -x "$dir/node_modules/.bin/mcp-inspector" ]; then
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    @modelcontextprotocol/server-filesystem@2026.8.31 \
    @modelcontextprotocol/server-everything@2026.8.31 \
    @modelcontextprotocol/inspector@2.12.0 >&2
fi
# Python MCP servers (git, time) from PyPI, in a venv of their own, and the
# official OTLP bindings the test collector decodes with.
venv="$dir/venv"
if [ ! -x "$venv/bin/mcp-server-git" ] || [ ! -x "$venv/bin/mcp-server-time" ] \
  || ! "$venv/bin/python" -c "import opentelemetry.proto" 2>/dev/null; then
  python3 -m venv "$venv" >&2 || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv" >&2; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    mcp-server-git==2026.10.19 mcp-server-time==2026.10.19 opentelemetry-proto==1.45.2 >&2
fi
