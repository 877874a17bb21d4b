#!/usr/bin/env bash
# A test CA and one certificate per role for the group's mutual TLS (docs/operations.md, "Safe defaults").
#
#   scripts/make-test-ca.sh DIR [NAME[:ROLE]]...
#
# Writes DIR/ca.pem and DIR/ca.key, then DIR/NAME.pem and DIR/NAME.key for each NAME (default: admin storage proxy
# archive). The certificate of NAME names the role ROLE (NAME when no ":ROLE" is given) as the subjectAltName URI
# walb-role:ROLE; "NAME:" makes a certificate without a role. Every certificate is valid for 127.0.0.1 and
# localhost (WALB_CA_SANS, e.g. "IP:10.0.0.5,DNS:host5"), as server and as client, for 30 days (WALB_CA_DAYS), and
# is signed by the CA of DIR (made if missing).
# For tests and trials: a real group gets its certificates from the operator's own CA, with the same names.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
dir=$1
shift
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(admin storage proxy archive)
days=${WALB_CA_DAYS:-30}
sans=${WALB_CA_SANS:-IP:127.0.0.1,DNS:localhost}

mkdir -p "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
if [[ ! -f $dir/ca.pem ]]; then
  openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" \
    -subj "/CN=walb test CA" 2>/dev/null
fi

for spec in "${names[@]}"; do
  name=${spec%%:*}
  role=$name
  [[ $spec == *:* ]] && role=${spec#*:}
  san=$sans
  [[ -n $role ]] && san="$san,URI:walb-role:$role"
  ext=$(mktemp)
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$ext"
  openssl req "${ec[@]}" -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=walb $name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/$name.pem" -days "$days" -extfile "$ext" 2>/dev/null
  rm -f "$ext" "$dir/$name.csr"
  echo "$dir/$name.pem${role:+ (role $role)}"
done
