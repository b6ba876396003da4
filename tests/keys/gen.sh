#!/bin/sh
# Regenerates the identity-assertion test keys beside this script:
#   assertion-a.pem, assertion-b.pem  ECDSA P-256 private keys, PKCS#8 PEM ("PRIVATE KEY"): what
#                                     identity.assertion_key takes. A signs; B is the second
#                                     key of the rotation tests.
#   assertion-a.kid, assertion-b.kid  each key's RFC 7638 JWK thumbprint, worked out here with
#                                     openssl alone, so that the tests check Portcullis's `kid`
#                                     against an independent derivation.
#   ec-sec1.pem                       a P-256 key in SEC1 form ("EC PRIVATE KEY"): refused.
#   p384.pem                          a P-384 key in PKCS#8 form: refused.
#
# Usage: sh tests/keys/gen.sh   (needs openssl 1.1.1 or later)
set -eu

dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

for name in assertion-a assertion-b; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.pem"
    # The SubjectPublicKeyInfo ends with the uncompressed point 0x04 || x || y (32 bytes each).
    openssl pkey -in "$dir/$name.pem" -pubout -outform DER -out "$work/pub.der"
    x=$(tail -c 64 "$work/pub.der" | head -c 32 | b64url)
    y=$(tail -c 32 "$work/pub.der" | b64url)
    printf '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' "$x" "$y" \
        | openssl dgst -sha256 -binary | b64url >"$dir/$name.kid"
done

openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ec-sec1.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$dir/p384.pem"
