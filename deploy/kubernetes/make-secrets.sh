#!/bin/sh
# Make the files the overlays' secretGenerators read: the master's token-signing key and the
# tokens it signs for a site. Nothing here is committed (secrets/ is ignored by git).
#
#   deploy/kubernetes/make-secrets.sh [--ttl SECONDS] MASTER_OVERLAY [SITE_OVERLAY...]
#
# Examples:
#   deploy/kubernetes/make-secrets.sh deploy/kubernetes/overlays/master deploy/kubernetes/overlays/site
#   deploy/kubernetes/make-secrets.sh --ttl 2592000 overlays/master overlays/site-b   # 30-day tokens
#   ESGF_HA="podman run --rm -v $PWD:$PWD:Z -w $PWD localhost/esgf-ha:dev" \
#       deploy/kubernetes/make-secrets.sh overlays/master overlays/site
#
# The key is made once: when MASTER_OVERLAY/secrets/token-signing.pem exists it signs the new
# tokens, so running this again (to add a site, or before tokens expire) keeps every token
# issued before valid. Per site it writes secrets/replicate.jwt (scope esgf:replicate, for the
# replica indexes), secrets/replicator.jwt (esgf:replicate esgf:publish esgf:download),
# secrets/publish.jwt (esgf:publish, for the publisher Job) and the master's public key
# secrets/token-signing.pub.pem (the data node checks download tokens with it).
set -eu

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }

TTL=31536000
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --ttl) TTL=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
ESGF_HA=${ESGF_HA:-esgf-ha}
MASTER=$1
shift

WORK=$(mktemp -d "${TMPDIR:-/tmp}/esgf-ha-secrets.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
umask 077
mkdir -p "$WORK/keys" "$MASTER/secrets"
if [ -f "$MASTER/secrets/token-signing.pem" ]; then
    cp "$MASTER/secrets/token-signing.pem" "$MASTER/secrets/token-signing.pub.pem" "$WORK/keys/"
fi

issue() {  # SUBJECT SCOPE... : a token signed by the master's key, on stdout, without a newline
    # (the publisher Job passes the token as an argument: a newline would end up in its header)
    subject=$1
    shift
    scopes=""
    for s in "$@"; do scopes="$scopes --scope $s"; done
    # shellcheck disable=SC2086  # ESGF_HA may be a command with arguments
    token=$($ESGF_HA token issue --state-dir "$WORK" --subject "$subject" --ttl "$TTL" $scopes)
    printf '%s' "$token"
}

# the first token makes the key when there is none yet
issue operator esgf:publish > /dev/null
cp "$WORK/keys/token-signing.pem" "$WORK/keys/token-signing.pub.pem" "$MASTER/secrets/"

for SITE in "$@"; do
    name=$(basename "$SITE")
    mkdir -p "$SITE/secrets"
    issue "replica-$name" esgf:replicate > "$SITE/secrets/replicate.jwt"
    issue "replicator-$name" esgf:replicate esgf:publish esgf:download > "$SITE/secrets/replicator.jwt"
    issue "publisher-$name" esgf:publish > "$SITE/secrets/publish.jwt"
    cp "$WORK/keys/token-signing.pub.pem" "$SITE/secrets/token-signing.pub.pem"
    echo "wrote $SITE/secrets (tokens valid $TTL s)" >&2
done
echo "wrote $MASTER/secrets" >&2
