#!/usr/bin/env bash
# The client the official conformance suite drives: `conformance client
# --command "tests/conformance/client.sh" ...` runs it with the scenario
# server's URL as the last argument, the scenario in MCP_CONFORMANCE_SCENARIO
# and its data (pre-registered client credentials) in MCP_CONFORMANCE_CONTEXT.
# It does what an engineer would: log in if the server asks (unattended,
# only ever following redirects to an authorization server on this machine),
# list the tools, call them.
# OPSBOT_BIN picks the binary (default: target/debug/opsbot).
set -uo pipefail
url="${!#}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
opsbot="${OPSBOT_BIN:-$root/target/debug/opsbot}"
scenario="${MCP_CONFORMANCE_SCENARIO:-}"
context="${MCP_CONFORMANCE_CONTEXT:-{\}}"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]) or "")' "$context" "$1"; }
client_id="$(field client_id)"
export CONFORMANCE_CLIENT_SECRET="$(field client_secret)"
private_key="$(field private_key_pem)"
algorithm="$(field signing_algorithm)"
# Cross-app access: the enterprise IdP and the ID token a sign-in gave.
export CONFORMANCE_ID_TOKEN="$(field idp_id_token)"

{
  printf '[servers.conformance]\nurl = "%s"\nstart = "eager"\n' "$url"
  # opsbot's Client ID Metadata Document, for authorization servers that
  # take one (the suite's stands in for where a team would host it).
  printf '[servers.conformance.oauth]\nclient_metadata_url = "https://conformance-test.local/client-metadata.json"\n'
  if [ -n "$client_id" ]; then
    printf 'client_id = "%s"\n' "$client_id"
    [ -n "$CONFORMANCE_CLIENT_SECRET" ] && printf 'client_secret = "${env:CONFORMANCE_CLIENT_SECRET}"\n'
  fi
  # Machine-to-machine scenarios: opsbot's own identity, no browser.
  case "$scenario" in
    auth/client-credentials-*)
      printf 'grant = "client_credentials"\n'
      if [ -n "$private_key" ]; then
        (umask 077; printf '%s\n' "$private_key" >"$home/client-key.pem")
        printf 'private_key_file = "%s"\nsigning_algorithm = "%s"\n' "$home/client-key.pem" "${algorithm:-ES256}"
      fi ;;
    auth/cross-app-access-*)
      printf 'grant = "cross_app_access"\nidp_issuer = "%s"\nidp_token_endpoint = "%s"\nidp_client_id = "%s"\nid_token = "${env:CONFORMANCE_ID_TOKEN}"\n' \
        "$(field idp_issuer)" "$(field idp_token_endpoint)" "$(field idp_client_id)" ;;
  esac
  # Only the scenario's server: the built-in sandbox stays off.
  for s in chat ci k8s monitor quality registry; do printf '[servers.%s]\nenabled = false\n' "$s"; done
  printf '[policy.rules.conformance]\ntools = "conformance.*"\nverdict = "allow"\nreason = "the scenario server changes nothing"\n'
} >"$home/config.toml"

ob() { "$opsbot" --data-dir "$home" --config "$home/config.toml" "$@"; }

case "$scenario" in
  auth/*) ob auth login conformance --follow-loopback --no-browser || exit 1 ;;
esac

tools="$(ob tools --refresh --json)" || exit 1
names="$(python3 -c '
import json,sys
for s in json.loads(sys.argv[1]):
    if s.get("server") == "conformance":
        for t in s.get("tools", []): print("conformance." + t["name"])
' "$tools")"
# A call refused for want of scope says to log in again: do that, once,
# and call again, as the engineer reading it would.
call() {
  local out
  out="$(ob call "$@" -y --elicit defaults 2>&1)" && { printf '%s\n' "$out"; return 0; }
  printf '%s\n' "$out"
  case "$out" in
    *"opsbot auth login"*)
      ob auth login conformance --follow-loopback --no-browser && ob call "$@" -y --elicit defaults ;;
    *) return 1 ;;
  esac
}
status=0
for name in $names; do
  case "$name" in
    conformance.add_numbers) call "$name" a=2 b=3 || status=1 ;;
    *) call "$name" || status=1 ;;
  esac
done
exit $status
