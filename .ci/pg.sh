#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on a loopback port, from
# Debian's packages (installed here if missing). Idempotent and safe to run
# from several test processes at once: the first starts it, the others find
# it running. Prints the cluster's URL (without its password); the password,
# made at random when the cluster is made, is in the file the second line
# names (0600); the third names the CA that signed the server's certificate.
set -euo pipefail
PORT=${OPSBOT_PG_PORT:-54329}
BASE=${OPSBOT_PG_BASE:-/tmp/opsbot-pg-$PORT}
DIR=$BASE/data
PWFILE=$BASE.password

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN=$(find_bin)
if [ -z "$BIN" ] || [ ! -x "$BIN/postgres" ]; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  BIN=$(find_bin)
fi

exec 9>"$BASE.lock"
flock 9

as_owner() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  if [ ! -f "$DIR/PG_VERSION" ] || [ ! -s "$PWFILE" ] || [ ! -f "$BASE/server.crt" ]; then
    rm -rf "$BASE"
    mkdir -p "$BASE"
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$PWFILE")
    cp "$PWFILE" "$BASE/pw"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$BASE"; fi
    as_owner "'$BIN/initdb' -D '$DIR' -U opsbot --pwfile='$BASE/pw' --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >'$BASE/initdb.log' 2>&1"
    rm -f "$BASE/pw"
    # TLS for the tests of [store] ca_file: a CA of our own and the
    # server's certificate for 127.0.0.1, signed by it.
    command -v openssl >/dev/null || apt-get install -y -qq openssl >/dev/null
    (
      cd "$BASE"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=opsbot test CA" \
        -keyout ca.key -out ca.crt >/dev/null 2>&1
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr >/dev/null 2>&1
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > server.ext
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile server.ext -out server.crt >/dev/null 2>&1
      chmod 600 server.key ca.key
      cp ca.crt "$BASE.ca.crt"
      if [ "$(id -u)" = 0 ]; then chown postgres server.key server.crt; fi
    )
  fi
  # The server must not inherit the lock (fd 9): it would hold it forever.
  as_owner "'$BIN/pg_ctl' -D '$DIR' -w -t 60 -l '$BASE/log' -o \"-p $PORT -k '$BASE' -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c ssl=on -c ssl_cert_file='$BASE/server.crt' -c ssl_key_file='$BASE/server.key'\" start >/dev/null" 9>&-
fi
echo "postgres://opsbot@127.0.0.1:$PORT/postgres"
echo "$PWFILE"
echo "$BASE.ca.crt"
