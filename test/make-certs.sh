#!/usr/bin/env bash
# Create throwaway TLS material for the webhooks tests.
#
#   test/make-certs.sh DIR
#
# Writes into DIR (created if needed, existing files overwritten):
#   ca.crt, ca.key                 test CA (trusted by the tests)
#   server.crt, server.key         server cert signed by ca for
#                                  localhost / 127.0.0.1 / ::1
#   rogue-ca.crt, rogue-ca.key     an unrelated CA
#   rogue.crt, rogue.key           server cert for the same names, signed by
#                                  the rogue CA (for "untrusted cert" tests)
#
# All files are made world-readable (including keys): these are throwaway
# test keys, and the tests run as a different user (postgres).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi

dir=$1
days=10
mkdir -p "$dir"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Run openssl, showing its output only if it fails.
ossl() {
    if ! openssl "$@" >"$tmp/out" 2>&1; then
        echo "openssl $1 failed:" >&2
        cat "$tmp/out" >&2
        exit 1
    fi
}

newkey() { # FILE
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

make_ca() { # NAME CN
    local name=$1 cn=$2
    newkey "$dir/$name.key"
    ossl req -x509 -new -key "$dir/$name.key" -sha256 -days "$days" \
        -subj "/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$dir/$name.crt"
}

make_server() { # NAME CA-NAME
    local name=$1 ca=$2
    newkey "$dir/$name.key"
    ossl req -new -key "$dir/$name.key" -subj "/CN=localhost" \
        -out "$tmp/$name.csr"
    cat >"$tmp/$name.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
    ossl x509 -req -in "$tmp/$name.csr" -sha256 -days "$days" \
        -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$tmp/$name.ext" \
        -out "$dir/$name.crt"
}

make_ca ca "webhooks test CA"
make_server server ca
make_ca rogue-ca "webhooks rogue CA"
make_server rogue rogue-ca

chmod 644 "$dir"/ca.crt "$dir"/ca.key "$dir"/server.crt "$dir"/server.key \
    "$dir"/rogue-ca.crt "$dir"/rogue-ca.key "$dir"/rogue.crt "$dir"/rogue.key
