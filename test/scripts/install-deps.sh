#!/usr/bin/env bash
# Installs the system packages the tests and the demo start: Prometheus and
# Alertmanager from Debian, kubectl, and the CA certificates make image puts
# in the image. Does nothing when they are present.
set -euo pipefail
# make test's two lanes may both get here; apt takes one at a time.
root="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$root/bin"
exec 9>"$root/bin/.lock-install-deps"
flock 9
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
# The CA bundle make image copies into the image.
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
