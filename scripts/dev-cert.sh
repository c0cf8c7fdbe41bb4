#!/usr/bin/env bash
# A development certificate authority and a certificate for localhost that
# HAProxy serves wss:// and https:// with (make cluster, docker compose).
#
#   scripts/dev-cert.sh [DIR]     (default .run/tls)
#
# DIR/ca.pem       the CA to trust (browsers, NODE_EXTRA_CA_CERTS); ten years
# DIR/ca.key       its key (mode 600): whoever has it can sign for the names below
# DIR/haproxy/localhost.pem
#                  certificate and key for localhost, 127.0.0.1 and ::1, one year,
#                  signed by the CA; readable by all, as the haproxy image runs
#                  as its own user. HAProxy takes the directory or the file.
#
# Made once: the CA is kept, the certificate made again only when missing or
# within 30 days of expiry. The CA is name-constrained to localhost and the
# loopback addresses, so that trusting it trusts nothing else even if its key
# leaks. Prints how to trust the CA.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/.run/tls}"
command -v openssl >/dev/null 2>&1 || {
  echo "dev-cert: openssl not found; run: scripts/ensure-packages.sh openssl" >&2
  exit 1
}
mkdir -p "$DIR/haproxy"
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
LOCAL='DNS:localhost,IP:127.0.0.1,IP:::1'

if [ ! -s "$DIR/ca.pem" ] || [ ! -s "$DIR/ca.key" ]; then
  (umask 077 && openssl req -x509 "${EC[@]}" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 3650 \
    -subj "/CN=Switchboard development CA ($(hostname))" \
    -addext 'basicConstraints=critical,CA:true,pathlen:0' \
    -addext 'keyUsage=critical,keyCertSign,cRLSign' \
    -addext 'nameConstraints=critical,permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0,permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' \
    2>/dev/null)
  chmod 644 "$DIR/ca.pem"
  rm -f "$DIR/haproxy/localhost.pem"
  echo "dev-cert: made a development CA: $DIR/ca.pem" >&2
fi

PEM="$DIR/haproxy/localhost.pem"
if [ ! -s "$PEM" ] || ! openssl x509 -in "$PEM" -noout -checkend $((30 * 86400)) >/dev/null; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  openssl req "${EC[@]}" -keyout "$WORK/key.pem" -out "$WORK/csr.pem" -subj /CN=localhost 2>/dev/null
  openssl x509 -req -in "$WORK/csr.pem" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -CAserial "$WORK/ca.srl" -days 365 -out "$WORK/cert.pem" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' "$LOCAL") \
    2>/dev/null
  cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/localhost.pem"
  chmod 644 "$WORK/localhost.pem"
  mv "$WORK/localhost.pem" "$PEM"
  echo "dev-cert: made a certificate for localhost, 127.0.0.1 and ::1: $PEM" >&2
fi

cat >&2 <<EOF
dev-cert: to trust wss://localhost, trust the development CA $DIR/ca.pem:
  Debian/Ubuntu:   sudo cp $DIR/ca.pem /usr/local/share/ca-certificates/switchboard-dev.crt && sudo update-ca-certificates
  Chromium/Firefox on Linux (NSS): certutil -d sql:\$HOME/.pki/nssdb -A -t C,, -n switchboard-dev -i $DIR/ca.pem
  macOS:           sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain $DIR/ca.pem
  Node.js clients: NODE_EXTRA_CA_CERTS=$DIR/ca.pem
EOF
