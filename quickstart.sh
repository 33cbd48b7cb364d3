#!/usr/bin/env bash
# Quick start, offline, on a fresh Debian 12 machine, as root: install what berth needs, build it,
# then pull an image from a throwaway local registry seeded from the host's busybox and run it.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then echo "run as root: sudo ./quickstart.sh" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
echo "== installing Debian packages (busybox-static, docker-registry, CNI plugins, ...)"
apt-get update -qq
apt-get install -y -qq gcc make libc6-dev busybox-static docker-registry containernetworking-plugins \
  iproute2 iptables libseccomp2 zstd >/dev/null
echo "== npm ci (builds native/ and the TypeScript)"
npm ci --no-audit --no-fund --loglevel=error
echo "== demo"
node --import tsx scripts/quickstart-demo.ts
echo
echo "berth is built: ./bin/berth.js (or 'npm link' to put berth and berth-oci on your PATH)."
