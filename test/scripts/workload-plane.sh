#!/usr/bin/env bash
# Builds the workload half of a control plane for the suites that need real
# Deployments, ReplicaSets, Pods and EndpointSlices: kube-controller-manager
# from the Go module proxy (the same replace block as kube-apiserver, see
# control-plane.sh) and kwok, which fakes nodes and marks pods Ready. No
# scheduler: the suites set nodeName in their pod templates.
# The result is cached beside kube-apiserver in bin/control-plane/<k8s
# version>/. Prints that folder on success.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${CONTROL_PLANE_DIR:-$root/bin/control-plane/$K8S_VERSION}"
work="$root/bin/control-plane/build"

# shellcheck source=k8s-build.sh
. "$root/test/scripts/k8s-build.sh"

log() { echo "workload-plane: $*" >&2; }

mkdir -p "$out"

# make test runs two lanes that may both ask for this build: one builds, the
# other waits here and then finds the binary.
mkdir -p "$root/bin"
exec 9>"$root/bin/.lock-workload-plane"
flock 9

if [ ! -x "$out/kube-controller-manager" ]; then
  log "building kube-controller-manager $K8S_VERSION (about 8 minutes after kube-apiserver)"
  build_k8s_command kube-controller-manager "$work/controller-manager-$K8S_VERSION" "$out"
fi

if [ ! -x "$out/kwok" ] || [ ! -f "$out/kwok-stages.yaml" ]; then
  log "building kwok $KWOK_VERSION"
  mod="$work/kwok-$KWOK_VERSION"
  rm -rf "$mod" && mkdir -p "$mod"
  (
    cd "$mod"
    printf 'module kwokbuild\n\ngo 1.26.0\n' > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
GO
    GOFLAGS=-mod=mod go get "sigs.k8s.io/kwok@$KWOK_VERSION" >&2
    GOFLAGS=-mod=mod go mod tidy >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok
    mv "$out/kwok.tmp" "$out/kwok"
    # kwok refuses to start without stages: the module's fast node and pod
    # stages (nodes Ready with heartbeats, pods Running and Ready at once).
    kwokdir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
    for f in node/fast node/heartbeat pod/fast; do
      for y in "$kwokdir/kustomize/stage/$f"/*.yaml; do
        case "$(basename "$y")" in kustomization.yaml) continue ;; esac
        echo "---"
        cat "$y"
      done
    done > "$out/kwok-stages.yaml.tmp"
    mv "$out/kwok-stages.yaml.tmp" "$out/kwok-stages.yaml"
  )
fi

echo "$out"
