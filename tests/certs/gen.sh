#!/bin/sh
# Regenerates the test certificates beside this script: an ECDSA P-256 test CA (ca.pem; its key
# is thrown away) and two leaf pairs, A (a.pem, a.key) and B (b.pem, b.key), each for DNS
# `localhost` and IP 127.0.0.1, signed by the CA and valid for 100 years. The integration tests
# use A and B to check that a certificate swapped on disk is picked up.
#
# Usage: sh tests/certs/gen.sh   (needs openssl 1.1.1 or later)
set -eu

dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=36525

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$days" \
    -subj "/CN=Portcullis Test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem"

cat > "$work/leaf.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT

for name in a b; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=localhost ($name)" -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA "$dir/ca.pem" -CAkey "$work/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" \
        -extfile "$work/leaf.ext" -out "$dir/$name.pem"
done
