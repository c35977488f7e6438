#!/usr/bin/env bash
# Builds Traefik, a conformant Gateway API implementation, from the Go module
# proxy for the suites that route real HTTP through a real gateway (test/traefik,
# make demo GATEWAY=traefik). Plain `go build` of Traefik v3.7.x fails here for
# three reasons; the patches below fix each without touching routing code:
#   (a) the nested module ./pkg/config/dynamic/ext is missing from the module
#       zip: recreated with upstream's empty types;
#   (b) the replace target github.com/containous/go-http-auth is refused by the
#       proxy: upstream abbot/go-http-auth v0.4.0 instead, with a shim for the
#       fork's CheckSecret and RequireAuthStale (BasicAuth/DigestAuth only);
#   (c) lego's DNS-provider registry pulls ~100 cloud SDKs, some refused: the
#       import is dropped (the ACME DNS challenge then returns an error).
# About 8 minutes and 1 GB of modules on a cold 2-core machine; the binary is
# cached in bin/traefik/<version>/. Prints its path on success.
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.7.13}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${TRAEFIK_DIR:-$root/bin/traefik/$TRAEFIK_VERSION}"
work="$root/bin/traefik/build/$TRAEFIK_VERSION"

log() { echo "traefik: $*" >&2; }

# make test runs two lanes that may both ask for this build: one builds, the
# other waits here and then finds the binary.
mkdir -p "$root/bin"
exec 9>"$root/bin/.lock-traefik"
flock 9

if [ -x "$out/traefik" ]; then
  echo "$out/traefik"
  exit 0
fi

log "building Traefik $TRAEFIK_VERSION (about 8 minutes and 1 GB of modules on a cold cache)"
mkdir -p "$out" "$work"
(
  cd "$work"
  [ -f go.mod ] || printf 'module traefikbuild\n\ngo 1.26.0\n' > go.mod
  go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" >/dev/null
  rm -rf src
  cp -r "$(go env GOMODCACHE)/github.com/traefik/traefik/v3@$TRAEFIK_VERSION" src
  chmod -R u+w src
  cd src

  # (a) the nested module missing from the zip.
  mkdir -p pkg/config/dynamic/ext
  printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' > pkg/config/dynamic/ext/go.mod
  cat > pkg/config/dynamic/ext/ext.go <<'GO'
package ext

type HTTP struct{}
type Router struct{}
type RouterIng struct{}

func (r RouterIng) ToRouter() Router { return Router{} }
GO

  # (c) no DNS-challenge provider registry.
  sed -i '/"github.com\/go-acme\/lego\/v5\/providers\/dns"/d' pkg/provider/acme/provider.go
  sed -i 's|provider, err = dns.NewDNSChallengeProviderByName(p.DNSChallenge.Provider)|provider, err = nil, fmt.Errorf("DNS challenge providers removed in this build: %s", p.DNSChallenge.Provider)|' pkg/provider/acme/provider.go

  # (b) upstream go-http-auth instead of the refused fork.
  sed -i '/github.com\/abbot\/go-http-auth => github.com\/containous\/go-http-auth/d' go.mod
  sed -i 's|github.com/abbot/go-http-auth v0.0.0-00010101000000-000000000000|github.com/abbot/go-http-auth v0.4.0|' go.mod
  cat > pkg/middlewares/auth/checksecret_compat.go <<'GO'
package auth

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"strings"

	goauth "github.com/abbot/go-http-auth"
	"golang.org/x/crypto/bcrypt"
)

func checkSecretCompat(password, secret string) bool {
	switch {
	case strings.HasPrefix(secret, "{SHA}"):
		sum := sha1.Sum([]byte(password))
		return subtle.ConstantTimeCompare([]byte(secret[5:]), []byte(base64.StdEncoding.EncodeToString(sum[:]))) == 1
	case strings.HasPrefix(secret, "$apr1$") || strings.HasPrefix(secret, "$1$"):
		e := goauth.NewMD5Entry(secret)
		if e == nil {
			return false
		}
		return subtle.ConstantTimeCompare([]byte(secret), goauth.MD5Crypt([]byte(password), e.Salt, e.Magic)) == 1
	case strings.HasPrefix(secret, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(secret), []byte(password)) == nil
	}
	return false
}
GO
  sed -i 's/checkSecret:       goauth.CheckSecret,/checkSecret:       checkSecretCompat,/' pkg/middlewares/auth/basic_auth.go
  sed -i 's/d.auth.RequireAuthStale(rw, req)/d.auth.RequireAuth(rw, req)/' pkg/middlewares/auth/digest_auth.go

  # Every patch must have applied: a changed upstream file fails here, not in the compiler.
  ! grep -q 'lego/v5/providers/dns"' pkg/provider/acme/provider.go
  grep -q 'DNS challenge providers removed in this build' pkg/provider/acme/provider.go
  ! grep -q 'containous/go-http-auth' go.mod
  grep -q 'github.com/abbot/go-http-auth v0.4.0' go.mod
  grep -q 'checkSecretCompat,' pkg/middlewares/auth/basic_auth.go
  ! grep -q 'RequireAuthStale' pkg/middlewares/auth/digest_auth.go

  rm -rf integration
  # Prune the requirements the dropped import needed (this removes the refused
  # SDKs); -e tolerates one refused test-only dependency of a dependency.
  go mod tidy -e > ../tidy.log 2>&1 || true
  # webui/static holds a placeholder file, so go:embed is satisfied.
  go build -trimpath -ldflags "-s -w" -o "$out/traefik.tmp" ./cmd/traefik
)
mv "$out/traefik.tmp" "$out/traefik"
rm -rf "$work/src"
echo "$out/traefik"
