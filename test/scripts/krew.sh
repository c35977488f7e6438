#!/usr/bin/env bash
# Builds krew and krew-index's manifest validator (validate-krew-manifest)
# from the Go module proxy with krew's own go.mod (its k8s.io dependencies
# are too old to join this module), and caches them in bin/krew/<version>/.
# Prints the directory on success. The release tests validate and install
# the plugin's krew manifest with them.
set -euo pipefail

KREW_VERSION="${KREW_VERSION:-v0.4.3}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${KREW_DIR:-$root/bin/krew/$KREW_VERSION}"

if [ ! -x "$out/krew" ] || [ ! -x "$out/validate-krew-manifest" ]; then
  echo "krew: building krew $KREW_VERSION from the Go module proxy" >&2
  mkdir -p "$out"
  GOBIN="$out" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
    "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION" \
    "sigs.k8s.io/krew/cmd/validate-krew-manifest@$KREW_VERSION" >&2
fi

echo "$out"
