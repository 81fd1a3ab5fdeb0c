#!/usr/bin/env bash
# oras (Python SDK): an artifact with a subject, found again through the referrers API.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
start_wharf
python3 "$here/oras_referrers.py" "127.0.0.1:$WHARF_PORT" admin "$WHARF_ADMIN_PASSWORD"
