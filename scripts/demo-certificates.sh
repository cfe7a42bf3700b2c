#!/usr/bin/env bash
# Throwaway TLS material for the demo cluster, made with the openssl CLI:
# a CA of its own, HAProxy's server certificate (for 127.0.0.1, localhost and
# lb1) and Redis's (for redis1, the name the nodes reach it by). Nothing here
# is trusted anywhere but by the clients told to trust this CA. Also the HS256
# secret the demo's nodes check client tokens with (jwt.key, for wsk-token).
#
#   scripts/demo-certificates.sh [DIR]     (default .demo-tls)
#
# Keeps what DIR holds while it stays valid for another week, so that deploying
# again changes nothing; makes everything anew otherwise.
set -euo pipefail

dir=${1:-"$(dirname "$0")/../.demo-tls"}
days=90
mkdir -p "$dir"
cd "$dir"

valid() {
    for file in ca.crt haproxy.pem redis.crt redis.key; do
        [ -s "$file" ] || return 1
    done
    openssl x509 -checkend 604800 -noout -in ca.crt >/dev/null &&
        openssl x509 -checkend 604800 -noout -in haproxy.pem >/dev/null &&
        openssl x509 -checkend 604800 -noout -in redis.crt >/dev/null
}

umask 077
if [ ! -s jwt.key ]; then
    openssl rand -hex 32 >jwt.key
fi

if valid; then
    exit 0
fi

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME SUBJECT SAN: NAME.key and NAME.crt, signed by the CA
sign() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=wsk demo CA $(date +%Y%m%d%H%M%S)" -days "$days" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt
sign haproxy "/CN=127.0.0.1" "IP:127.0.0.1,IP:::1,DNS:localhost,DNS:lb1"
sign redis "/CN=redis1" "DNS:redis1,IP:127.0.0.1"
# HAProxy reads the certificate and its key from one file.
cat haproxy.crt haproxy.key >haproxy.pem
rm -f haproxy.crt haproxy.key ca.srl
chmod 0644 ca.crt
echo "demo-certificates: a new CA and certificates in $(pwd)" >&2
