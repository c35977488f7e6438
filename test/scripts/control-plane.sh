#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy (setup-envtest cannot
# download on machines without internet access) and links kubectl beside them.
# The result is cached in bin/control-plane/<k8s version>/, which is the folder
# KUBEBUILDER_ASSETS points at. Prints that folder on success.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${CONTROL_PLANE_DIR:-$root/bin/control-plane/$K8S_VERSION}"
work="$root/bin/control-plane/build"

# shellcheck source=k8s-build.sh
. "$root/test/scripts/k8s-build.sh"

log() { echo "control-plane: $*" >&2; }

mkdir -p "$out"

# make test runs two lanes that may both ask for this build: one builds, the
# other waits here and then finds the binary.
mkdir -p "$root/bin"
exec 9>"$root/bin/.lock-control-plane"
flock 9

if [ ! -x "$out/kube-apiserver" ]; then
  log "building kube-apiserver $K8S_VERSION (about 10 minutes on a cold cache)"
  build_k8s_command kube-apiserver "$work/apiserver-$K8S_VERSION" "$out"
fi

if [ ! -x "$out/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  mod="$work/etcd-$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod"
  (
    cd "$mod"
    printf 'module etcdbuild\n\ngo 1.26.0\n' > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$out/etcd.tmp" "$out/etcd"
  )
fi

if [ ! -e "$out/kubectl" ]; then
  kc="$(command -v kubectl || true)"
  if [ -z "$kc" ]; then
    log "kubectl is not on PATH; install it (it ships on this project's machines)"
    exit 1
  fi
  ln -sf "$kc" "$out/kubectl"
fi

echo "$out"
