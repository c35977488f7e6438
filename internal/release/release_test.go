package release

import "testing"

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"0.1.0", true},
		{"1.2.3-rc.1", true},
		{"1.2.3+build.5", true},
		{"v0.1.0", false}, // krew adds the v; Helm and the image tag take x.y.z
		{"0.1", false},
		{"", false},
		{"0.1.0 ", false},
		{"latest", false},
	} {
		if err := CheckVersion(tc.version); (err == nil) != tc.ok {
			t.Errorf("CheckVersion(%q) = %v, want ok=%v", tc.version, err, tc.ok)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Platform
		ok   bool
	}{
		{"linux/amd64", Platform{"linux", "amd64"}, true},
		{"windows/amd64", Platform{"windows", "amd64"}, true},
		{"linux", Platform{}, false},
		{"linux/arm/v7", Platform{}, false},
		{"/amd64", Platform{}, false},
	} {
		got, err := ParsePlatform(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestArchiveName(t *testing.T) {
	if got := ArchiveName("0.1.0", Platform{"windows", "amd64"}); got != "kubectl-modelrollout_v0.1.0_windows_amd64.zip" {
		t.Errorf("windows archive %s", got)
	}
	if got := ArchiveName("0.1.0", Platform{"darwin", "arm64"}); got != "kubectl-modelrollout_v0.1.0_darwin_arm64.tar.gz" {
		t.Errorf("darwin archive %s", got)
	}
}
