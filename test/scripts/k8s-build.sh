# Sourced by control-plane.sh and workload-plane.sh: builds one command of
# k8s.io/kubernetes from the Go module proxy.
#
# k8s.io/kubernetes replaces its k8s.io/* staging modules with local folders
# that are not in the module zip, so `go install` refuses it. A throwaway
# module that requires it and maps every staging module to its published
# v0.x version builds it.

# build_k8s_command CMD MODDIR OUT: builds k8s.io/kubernetes/cmd/CMD at
# $K8S_VERSION in the module folder MODDIR (recreated) into OUT/CMD.
build_k8s_command() {
  local cmd="$1" mod="$2" out="$3"
  rm -rf "$mod" && mkdir -p "$mod"
  (
    cd "$mod"
    k8sdir="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    staging_version="v0${K8S_VERSION#v1}"
    {
      echo "module ${cmd//-/}build"
      echo
      echo "go 1.26.0"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      # Every staging module k8s.io/kubernetes replaces with a local folder is
      # published on its own under the matching v0.x version.
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$k8sdir/go.mod" |
        sort -u | while read -r m; do echo "	$m => $m $staging_version"; done
      echo ")"
    } > go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" > tools.go
    GOFLAGS=-mod=mod go mod tidy >&2
    minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$out/$cmd.tmp" "$out/$cmd"
  )
}
