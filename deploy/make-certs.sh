#!/bin/sh
# make-certs.sh: the certificates of the journal's own TLS link, from each
# receiver's systemd-journal-upload to the collector's systemd-journal-remote
# (see deploy/README.md).  Not secmsgd's credentials: those are made by
# secmsgd --init-credentials (or your CA) and are another matter.
#
#   deploy/make-certs.sh OUTDIR COLLECTOR [RECEIVER...]
#
# COLLECTOR is the name (or IP address) the receivers' URL= uses to reach the
# collector; each RECEIVER is a receiver's host name.  Makes, with openssl:
#   OUTDIR/ca.key, OUTDIR/ca.crt     a CA of this link only (keep ca.key off
#                                    the machines; it signs new certificates)
#   OUTDIR/COLLECTOR/journal-remote.key, .crt
#                                    the collector's server certificate, its
#                                    name in subjectAltName (curl checks it)
#   OUTDIR/RECEIVER/journal-upload.key, .crt
#                                    one client certificate per receiver,
#                                    CN=RECEIVER: journal-remote accepts only
#                                    clients whose certificate the CA signed
# and copies ca.crt next to each.  Keys are ECDSA P-256, mode 0600.  An
# existing CA in OUTDIR is reused, so the script can add receivers later;
# an existing certificate is never overwritten.
set -eu

if [ $# -lt 2 ]; then
    sed -n '2,24s/^# \{0,1\}//p' "$0" >&2
    exit 64
fi
out=$1 collector=$2
shift 2
days_ca=3650
days=825
umask 077
mkdir -p "$out"

# subjectAltName for a name or an IPv4/IPv6 address.
san() {
    case $1 in
        *:* | *[0-9].*[0-9].*[0-9].*[0-9]) echo "IP:$1" ;;
        *) echo "DNS:$1" ;;
    esac
}

# key FILE: a new P-256 key, unless FILE exists.
key() {
    [ -e "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# sign DIR NAME BASE USAGE: DIR/BASE.crt for DIR/BASE.key, CN=NAME, signed by the CA.
sign() {
    dir=$1 name=$2 base=$3 usage=$4
    mkdir -p "$dir"
    key "$dir/$base.key"
    cp "$out/ca.crt" "$dir/ca.crt"
    if [ -e "$dir/$base.crt" ]; then
        echo "kept $dir/$base.crt"
        return
    fi
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=$usage" \
        "subjectAltName=$(san "$name")" > "$ext"
    openssl req -new -key "$dir/$base.key" -subj "/CN=$name" |
        openssl x509 -req -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
            -days "$days" -sha256 -extfile "$ext" -out "$dir/$base.crt" 2>/dev/null
    rm -f "$ext"
    chmod 644 "$dir/$base.crt" "$dir/ca.crt"
    echo "made $dir/$base.crt (CN=$name, $usage, $days days)"
}

if [ ! -e "$out/ca.crt" ]; then
    key "$out/ca.key"
    openssl req -new -x509 -key "$out/ca.key" -subj "/CN=secmsg journal upload CA" \
        -days "$days_ca" -sha256 \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt"
    chmod 644 "$out/ca.crt"
    echo "made $out/ca.crt ($days_ca days)"
fi
sign "$out/$collector" "$collector" journal-remote serverAuth
for receiver in "$@"; do
    sign "$out/$receiver" "$receiver" journal-upload clientAuth
done
