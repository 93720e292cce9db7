#!/usr/bin/env bash
# One-time preparation of the single-VM recipe, run from this directory:
#
#   sudo ./setup.sh [PUBLIC_HOST]
#
# Writes what compose.yaml references but the repository cannot ship: random API keys and a
# Grafana password (secrets/), a self-signed certificate (tls/) unless you put yours there, and
# .env (PUBLIC_HOST, SIDECAR_POD_NAME). Existing files are never overwritten, so it is safe to
# run again. Each secret is readable only by the container user that needs it; the two files the
# `docker compose` command itself reads (.env and secrets/vllm.env) belong to the user who ran
# sudo (or COMPOSE_USER=name), so compose works as that (docker-group) user, not only as root.
set -euo pipefail

cd "$(dirname "$0")"

if [[ "$(id -u)" != 0 ]]; then
    echo "setup.sh: run as root (sudo ./setup.sh): the secret files must belong to the users of the containers that read them" >&2
    exit 1
fi

PUBLIC_HOST="${1:-$(hostname -f 2>/dev/null || hostname)}"
SIDECAR_UID=10001   # USER of the vllm-sidecar image (Dockerfile)
GRAFANA_UID=472     # grafana/grafana
NOBODY_UID=65534    # prom/alertmanager runs as nobody
if [[ -n "${COMPOSE_USER:-}" ]]; then
    COMPOSE_OWNER="$(id -u "$COMPOSE_USER"):$(id -g "$COMPOSE_USER")"
else
    COMPOSE_OWNER="${SUDO_UID:-0}:${SUDO_GID:-0}"   # who runs `docker compose` afterwards
fi

random_key() { openssl rand -hex 32; }

# write FILE OWNER MODE: content from stdin, only when FILE does not exist yet. A kept file
# still gets OWNER and MODE, which repairs files an older setup.sh wrote as root.
write() {
    local file="$1" owner="$2" mode="$3"
    if [[ -e "$file" ]]; then
        echo "kept    $file"
        cat >/dev/null
        chown "$owner" "$file"
        chmod "$mode" "$file"
        return
    fi
    (umask 077 && cat >"$file")
    chown "$owner" "$file"
    chmod "$mode" "$file"
    echo "wrote   $file"
}

mkdir -p secrets tls

# The key clients send (Authorization: Bearer ...): one named key per client, add more lines.
write secrets/sidecar-api-keys.yaml "$SIDECAR_UID:$SIDECAR_UID" 0400 <<KEYS
# name: key. Clients send "Authorization: Bearer <key>"; the name labels metrics and samples.
default: "sk-$(random_key)"
KEYS

# vLLM's own key: only the sidecar knows it, so nothing reaches vLLM around the proxy.
UPSTREAM_KEY="$(random_key)"
if [[ -e secrets/vllm-api-key ]]; then
    UPSTREAM_KEY="$(cat secrets/vllm-api-key)"
fi
printf '%s\n' "$UPSTREAM_KEY" | write secrets/vllm-api-key "$SIDECAR_UID:$SIDECAR_UID" 0400
write secrets/vllm.env "$COMPOSE_OWNER" 0600 <<ENV
VLLM_API_KEY=$UPSTREAM_KEY
# HF_TOKEN=hf_...   (for gated models)
ENV

random_key | write secrets/grafana-admin-password "$GRAFANA_UID:0" 0400
write secrets/slack-webhook-url "$NOBODY_UID:0" 0400 <<URL
https://hooks.slack.com/services/REPLACE/WITH/YOUR-WEBHOOK
URL

if [[ ! -e tls/fullchain.pem || ! -e tls/privkey.pem ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$PUBLIC_HOST" \
        -addext "subjectAltName=DNS:$PUBLIC_HOST" \
        -keyout tls/privkey.pem -out tls/fullchain.pem 2>/dev/null
    chmod 0600 tls/privkey.pem
    echo "wrote   tls/fullchain.pem, tls/privkey.pem (self-signed for $PUBLIC_HOST; replace with a real certificate)"
else
    echo "kept    tls/fullchain.pem, tls/privkey.pem"
fi

write .env "$COMPOSE_OWNER" 0644 <<DOTENV
PUBLIC_HOST=$PUBLIC_HOST
SIDECAR_POD_NAME=$(hostname -s 2>/dev/null || hostname)
# VLLM_MODEL=Qwen/Qwen2.5-1.5B-Instruct
# VLLM_SERVED_MODEL_NAME=qwen
DOTENV

echo
echo "Next: edit secrets/slack-webhook-url, then (as $(id -nu "${COMPOSE_OWNER%%:*}" 2>/dev/null || echo "${COMPOSE_OWNER%%:*}"), a member of the docker group): docker compose up -d --build"
echo "Client key: grep default secrets/sidecar-api-keys.yaml"
