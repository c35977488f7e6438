#!/usr/bin/env bash
# Builds golangci-lint, with kube-api-linter built in as a module plugin, from
# the Go module proxy (release binaries cannot be downloaded on machines without
# internet access, and `golangci-lint custom` clones a Git repository). The
# module in test/tools/golangci-lint pins both versions and every dependency in
# its own go.sum, apart from the project's go.mod. The binary is cached in
# bin/tools/golangci-lint/<hash of that module>/, so any change to the pins
# rebuilds it. Prints the binary's path on success.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/test/tools/golangci-lint"
key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
out="${GOLANGCI_LINT_DIR:-$root/bin/tools/golangci-lint}/$key"

# make test runs two lanes that may both ask for this build: one builds, the
# other waits here and then finds the binary.
mkdir -p "$root/bin"
exec 9>"$root/bin/.lock-golangci-lint"
flock 9

if [ ! -x "$out/golangci-lint" ]; then
  echo "golangci-lint: building $(awk '$1 ~ /golangci-lint|kube-api-linter/ {print $1 "@" $2}' "$src/go.mod" | tr '\n' ' ')from the Go module proxy (a few minutes on a cold cache)" >&2
  mkdir -p "$out"
  (
    cd "$src"
    GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/golangci-lint.tmp" .
  )
  mv "$out/golangci-lint.tmp" "$out/golangci-lint"
fi

echo "$out/golangci-lint"
