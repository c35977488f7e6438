package release_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerfile checks the Dockerfile for Docker users without Docker: it
// copies every package of this module the manager is built from, builds it
// as `make image` does, and runs it as `make image` sets it up.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	var copied []string
	for _, line := range strings.Split(df, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "COPY" && !strings.HasPrefix(f[1], "--") {
			copied = append(copied, strings.TrimSuffix(f[1], "/"))
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/manager")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range copied {
			if rel == c || strings.HasPrefix(rel, c+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("the manager imports ./%s, which the Dockerfile does not copy (it copies %q)", rel, copied)
		}
	}
	for _, want := range []string{
		"CGO_ENABLED=0",
		`go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /manager ./cmd/manager`,
		"FROM gcr.io/distroless/static:nonroot\n",
		"USER 65532:65532\n",
		`ENTRYPOINT ["/manager"]`,
		"org.opencontainers.image.source=\"https://github.com/modelrollout/modelrollout\"",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
}
