#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy (the release tarballs cannot be
# downloaded on machines without internet access) in a throwaway module, and
# caches it in bin/helm/<version>/helm. Prints the binary's path on success.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${HELM_DIR:-$root/bin/helm/$HELM_VERSION}"
work="$root/bin/helm/build/helm-$HELM_VERSION"

log() { echo "helm: $*" >&2; }

if [ ! -x "$out/helm" ]; then
  log "building helm $HELM_VERSION from the Go module proxy (a few minutes on a cold cache)"
  mkdir -p "$out"
  rm -rf "$work" && mkdir -p "$work"
  (
    cd "$work"
    printf 'module helmbuild\n\ngo 1.26.0\n' > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v3/cmd/helm"
GO
    GOFLAGS=-mod=mod go get "helm.sh/helm/v3@$HELM_VERSION" >&2
    GOFLAGS=-mod=mod go mod tidy >&2
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      -o "$out/helm.tmp" helm.sh/helm/v3/cmd/helm
    mv "$out/helm.tmp" "$out/helm"
  )
fi

echo "$out/helm"
