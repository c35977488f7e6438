package alerts

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// errEmptyToken is returned when the configured token is empty.
var errEmptyToken = errors.New("the bearer token is empty; the alert receiver refuses to run unauthenticated")

// tokenSource yields the expected bearer token: a static string, or the
// trimmed content of a file, re-read whenever the file changes.
type tokenSource struct {
	static string
	path   string

	mu    sync.Mutex
	info  os.FileInfo // of the file when token was read
	token string
}

func newTokenSource(static, path string) (*tokenSource, error) {
	switch {
	case static != "" && path != "":
		return nil, errors.New("set either Token or TokenFile, not both")
	case path != "":
		return &tokenSource{path: path}, nil
	case strings.TrimSpace(static) != "":
		return &tokenSource{static: strings.TrimSpace(static)}, nil
	default:
		return nil, fmt.Errorf("no bearer token configured (Token or TokenFile): %w", errEmptyToken)
	}
}

// get returns the current token. For a file, it costs one stat when the file
// has not changed. A file that cannot be read or is empty is an error: the
// receiver then refuses every request rather than accept any.
func (s *tokenSource) get() (string, error) {
	if s.path == "" {
		return s.static, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Stat follows symlinks: a Secret volume swaps its ..data symlink on
	// rotation, so the file seen here is a different one afterwards.
	fi, err := os.Stat(s.path)
	if err != nil {
		return "", fmt.Errorf("read bearer token file: %w", err)
	}
	if s.info != nil && sameVersion(s.info, fi) {
		return s.token, nil
	}
	raw, err := os.ReadFile(s.path)
	if err != nil {
		return "", fmt.Errorf("read bearer token file: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		s.info, s.token = nil, ""
		return "", fmt.Errorf("bearer token file %s: %w", s.path, errEmptyToken)
	}
	s.info, s.token = fi, tok
	return tok, nil
}

func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) &&
		// A file rewritten in place within the file system's timestamp
		// granularity keeps its size and mtime; re-read files younger than
		// that to be safe.
		time.Since(b.ModTime()) > 2*time.Second
}

// bearer extracts the credentials of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive (RFC 9110).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// tokensEqual compares in time independent of the contents and lengths.
func tokensEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
