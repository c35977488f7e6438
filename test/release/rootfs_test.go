package release_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	. "github.com/onsi/gomega"

	"github.com/modelrollout/modelrollout/internal/release"
)

// The tests of this file unpack the image for this machine's platform into
// a root file system, as a container runtime does, and run the manager
// from it as the image's user.

// hostImage is the image of the built index for this machine's platform.
func hostImage(t *testing.T) (builtImage, v1.Image) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the image is for Linux; this is %s", runtime.GOOS)
	}
	built := buildImage(t)
	idx, _ := readIndex(t, built.files.Layout)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return built, img
		}
	}
	t.Fatalf("the image has no %s/%s manifest", runtime.GOOS, runtime.GOARCH)
	return builtImage{}, nil
}

// unpack applies the image's layers in order into dir, as a container
// runtime does: whiteouts (.wh.NAME) delete what lower layers put there,
// opaque whiteouts (.wh..wh..opq) hide a directory's lower content, and
// files keep their mode and owner (the tests run as root, so chown works).
func unpack(img v1.Image, dir string) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for i, l := range layers {
		if err := applyLayer(l, dir); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return nil
}

// inRoot resolves a layer entry's name inside dir, refusing names that
// leave it.
func inRoot(dir, name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" {
		return dir, nil
	}
	p := filepath.Join(dir, filepath.FromSlash(clean))
	if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return "", fmt.Errorf("entry %q leaves the root file system", name)
	}
	return p, nil
}

func applyLayer(l v1.Layer, dir string) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	written := map[string]bool{} // by this layer
	var opaque []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		p, err := inRoot(dir, h.Name)
		if err != nil {
			return err
		}
		base := filepath.Base(p)
		switch {
		case base == ".wh..wh..opq":
			opaque = append(opaque, filepath.Dir(p))
			continue
		case strings.HasPrefix(base, ".wh."):
			if err := os.RemoveAll(filepath.Join(filepath.Dir(p), strings.TrimPrefix(base, ".wh."))); err != nil {
				return err
			}
			continue
		}
		if p == dir {
			continue
		}
		written[p] = true
		for d := filepath.Dir(p); d != dir && !written[d]; d = filepath.Dir(d) {
			written[d] = true // parents the layer implies
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if fi, err := os.Lstat(p); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
		mode := fs.FileMode(h.Mode).Perm() | fs.FileMode(h.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := inRoot(dir, h.Linkname)
			if err != nil {
				return err
			}
			if err := os.Link(target, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %q", h.Name, h.Typeflag)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeSymlink {
			// chmod after chown: chown clears set-id bits.
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
	}
	// An opaque directory keeps only what this layer put in it.
	for _, d := range opaque {
		entries, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if c := filepath.Join(d, e.Name()); !written[c] {
				if err := os.RemoveAll(c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rootfsFiles lists a root file system as slash paths relative to its root.
func rootfsFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// flattened lists the image's file system as go-containerregistry
// flattens it (mutate.Extract), the reference the unpacker is held to.
func flattened(t *testing.T, img v1.Image) []string {
	t.Helper()
	files := layerFiles(t, img)
	// Extract lists only entries; parent directories a layer implies
	// without an entry of their own exist too.
	set := map[string]bool{}
	for n := range files {
		for p := n; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			set[p] = true
		}
	}
	out := keys(set)
	sort.Strings(out)
	return out
}

// TestRootfsUnpack checks the unpacker on an image with whiteouts on top
// of the built one: a deleted file and an opaque directory are gone, and
// the tree is the one go-containerregistry's own flattening gives.
func TestRootfsUnpack(t *testing.T) {
	_, img := hostImage(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeReg, Name: "etc/.wh.group", Mode: 0o644},
		{Typeflag: tar.TypeDir, Name: "etc/ssl/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "etc/ssl/.wh..wh..opq", Mode: 0o644},
		{Typeflag: tar.TypeReg, Name: "etc/ssl/added", Mode: 0o600, Uid: 65532, Gid: 65532, Size: 2},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("ok")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	top, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, top)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := unpack(img, dir); err != nil {
		t.Fatal(err)
	}
	got, want := rootfsFiles(t, dir), flattened(t, img)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("unpacked %q, go-containerregistry flattens to %q", got, want)
	}
	for _, gone := range []string{"etc/group", "etc/ssl/certs"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is whited out, but unpacked (%v)", gone, err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "etc/ssl/added"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || st.Gid != 65532 || fi.Mode().Perm() != 0o600 {
		t.Errorf("etc/ssl/added: owner %d:%d mode %v, want 65532:65532 -rw-------", st.Uid, st.Gid, fi.Mode())
	}
	for _, kept := range []string{"etc/passwd", strings.TrimPrefix(release.Entrypoint, "/")} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
}

// imageUser parses the config's User as numeric uid:gid, looking a name
// up in the root file system's /etc/passwd as a runtime does.
func imageUser(t *testing.T, dir, user string) (uint32, uint32) {
	t.Helper()
	u, g, hasGroup := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	gid := uint64(0)
	if err != nil || !hasGroup {
		passwd, rerr := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
		if rerr != nil {
			t.Fatalf("user %q: %v", user, rerr)
		}
		found := false
		for _, line := range strings.Split(string(passwd), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 4 && (f[0] == u || f[2] == u) {
				uid, _ = strconv.ParseUint(f[2], 10, 32)
				gid, _ = strconv.ParseUint(f[3], 10, 32)
				found = true
			}
		}
		if !found {
			t.Fatalf("user %q is not in the image's /etc/passwd", user)
		}
	}
	if hasGroup {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			t.Fatalf("user %q: the group is not numeric", user)
		}
	}
	return uint32(uid), uint32(gid)
}

// TestRootfsConfig unpacks the image for this platform and checks its
// config against the root file system: an exec-form entrypoint that is a
// static binary in it (no shell, no dynamic loader needed), a non-root
// user that /etc/passwd knows, the labels, and no shell anywhere.
func TestRootfsConfig(t *testing.T) {
	built, img := hostImage(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := unpack(img, dir); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config

	// Exec form: one absolute path, run directly, no `sh -c`.
	if len(c.Entrypoint) != 1 || !path.IsAbs(c.Entrypoint[0]) || len(c.Cmd) != 0 {
		t.Fatalf("entrypoint %q cmd %q, want the exec form [%q] and no cmd", c.Entrypoint, c.Cmd, release.Entrypoint)
	}
	if c.Entrypoint[0] != release.Entrypoint {
		t.Errorf("entrypoint %s, want %s", c.Entrypoint[0], release.Entrypoint)
	}
	entry := filepath.Join(dir, c.Entrypoint[0])
	fi, err := os.Lstat(entry)
	if err != nil {
		t.Fatalf("the entrypoint is not in the root file system: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o001 == 0 {
		t.Errorf("entrypoint %s: mode %v, want a regular file any user may run", c.Entrypoint[0], fi.Mode())
	}
	ef, err := elf.Open(entry)
	if err != nil {
		t.Fatalf("entrypoint: %v", err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the entrypoint is dynamically linked: it needs a loader the image does not have")
		}
	}
	ef.Close()
	if c.WorkingDir != "" {
		if fi, err := os.Stat(filepath.Join(dir, c.WorkingDir)); err != nil || !fi.IsDir() {
			t.Errorf("working directory %s is not a directory of the root file system (%v)", c.WorkingDir, err)
		}
	}

	// No shell: neither at the usual paths nor anywhere else.
	for _, f := range rootfsFiles(t, dir) {
		switch path.Base(f) {
		case "sh", "bash", "ash", "dash", "busybox", "zsh":
			t.Errorf("the root file system holds a shell: /%s", f)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "bin", "sh")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/bin/sh: %v, want none", err)
	}

	// A non-root user, numeric so that Kubernetes' runAsNonRoot can verify
	// it, and known to the image's /etc/passwd and /etc/group.
	uid, gid := imageUser(t, dir, c.User)
	if uid == 0 || gid == 0 {
		t.Errorf("user %q runs as root", c.User)
	}
	if uid != release.NonRoot || gid != release.NonRoot {
		t.Errorf("user %q, want %d:%d (the chart's runAsUser)", c.User, release.NonRoot, release.NonRoot)
	}
	if _, err := strconv.Atoi(strings.Split(c.User, ":")[0]); err != nil {
		t.Errorf("user %q is a name: runAsNonRoot cannot check it", c.User)
	}
	for file, id := range map[string]uint32{"passwd": uid, "group": gid} {
		b, err := os.ReadFile(filepath.Join(dir, "etc", file))
		if err != nil {
			t.Errorf("/etc/%s: %v", file, err)
			continue
		}
		if !strings.Contains(string(b), fmt.Sprintf(":%d:", id)) {
			t.Errorf("/etc/%s has no entry for %d", file, id)
		}
	}
	// What the user must read: the CA bundle.
	if fi, err := os.Stat(filepath.Join(dir, release.CACertsPath)); err != nil || fi.Mode().Perm()&0o004 == 0 {
		t.Errorf("%s: %v, want a file every user may read", release.CACertsPath, err)
	}

	// The labels are the release's.
	want := built.opts.Labels()
	for k, v := range want {
		if c.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, c.Labels[k], v)
		}
	}
	if c.Labels["org.opencontainers.image.version"] != version || c.Labels["org.opencontainers.image.revision"] != sourceBuild(t).Revision {
		t.Errorf("labels %v: version or revision is not the build's", c.Labels)
	}
}

// procIDs reads a process's real, effective, saved and file-system user
// and group IDs from /proc.
func procIDs(pid int) (uids, gids string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uids = strings.Join(strings.Fields(v), " ")
		}
		if v, ok := strings.CutPrefix(line, "Gid:"); ok {
			gids = strings.Join(strings.Fields(v), " ")
		}
	}
	return uids, gids, nil
}

// TestRootfsManagerRuns runs the entrypoint of the unpacked image, chrooted
// into its root file system and as the image's user, against the test API
// server: it starts, serves its probes and metrics, and moves a rollout's
// canary to its first step.
func TestRootfsManagerRuns(t *testing.T) {
	g := NewWithT(t)
	_, img := hostImage(t)
	_, kcfg := apiServer(t)
	if os.Geteuid() != 0 {
		t.Skip("running the image's user needs root (chroot, setuid); the tests run as root in CI")
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	g.Expect(unpack(img, dir)).To(Succeed())
	cf, err := img.ConfigFile()
	g.Expect(err).NotTo(HaveOccurred())
	uid, gid := imageUser(t, dir, cf.Config.User)

	// The kubeconfig goes into the root file system, readable by the
	// image's user only, as a mounted Secret would be.
	raw, err := os.ReadFile(kcfg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.MkdirAll(filepath.Join(dir, "var", "run", "modelrollout"), 0o755)).To(Succeed())
	inside := "/var/run/modelrollout/kubeconfig"
	g.Expect(os.WriteFile(filepath.Join(dir, inside), raw, 0o400)).To(Succeed())
	g.Expect(os.Chown(filepath.Join(dir, inside), int(uid), int(gid))).To(Succeed())

	c := apiClient(g, kcfg)

	ns := "rootfs-run"
	ctx, cancel := context.WithCancel(context.Background())
	createNamespace(ctx, g, c, ns)

	probes, metrics := freePort(t), freePort(t)
	args := append(append([]string{}, cf.Config.Entrypoint...), cf.Config.Cmd...)
	args = append(args,
		"--kubeconfig", inside,
		"--leader-elect=true", "--leader-election-namespace="+ns,
		"--metrics-bind-address="+metrics, "--health-probe-bind-address="+probes,
		"--zap-encoder=json")
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Path = args[0] // resolved inside the chroot, not on this machine
	cmd.Dir = cf.Config.WorkingDir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Env = cf.Config.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     dir,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	logs := startManager(t, g, cmd, cancel)

	// It runs as the image's user, not as the root that started it.
	uids, gids, err := procIDs(cmd.Process.Pid)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(uids).To(Equal(strings.Repeat(fmt.Sprint(uid)+" ", 3)+fmt.Sprint(uid)), "real, effective, saved and fs uid")
	g.Expect(gids).To(Equal(strings.Repeat(fmt.Sprint(gid)+" ", 3)+fmt.Sprint(gid)), "real, effective, saved and fs gid")
	g.Expect(uid).To(BeEquivalentTo(release.NonRoot))

	b := sourceBuild(t)
	g.Eventually(logs.String, 2*time.Minute).Should(ContainSubstring(fmt.Sprintf(`"msg":"Starting the manager","version":%q`, b.Describe)))

	get := func(url string) (int, string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		g.Eventually(func() (int, error) {
			code, _, err := get("http://" + probes + probe)
			return code, err
		}, 2*time.Minute, 200*time.Millisecond).Should(Equal(http.StatusOK), probe)
	}

	createCanaryRollout(ctx, g, c, ns)
	waitFirstStep(ctx, g, c, ns, logs, nil)

	// Its metrics say so too.
	series := fmt.Sprintf(`modelrollout_canary_weight{name="rollout",namespace=%q} 10`, ns)
	g.Eventually(func() (string, error) {
		code, body, err := get("http://" + metrics + "/metrics")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/metrics: %d", code)
		}
		return body, err
	}, time.Minute, 200*time.Millisecond).Should(ContainSubstring(series))

	g.Expect(strings.Contains(logs.String(), `"level":"error"`)).To(BeFalse(), "the manager logged errors:\n%s", logs.String())
	// Still the image's user after it started its workers.
	uids, _, err = procIDs(cmd.Process.Pid)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Fields(uids)).To(HaveEach(fmt.Sprint(release.NonRoot)))
}
