package alerts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// startReceiver runs r.Start until the test ends and waits for its address.
// It returns the base URL and a function that stops the receiver and returns
// Start's error.
func startReceiver(t *testing.T, r *Receiver, scheme string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	var addr net.Addr
	eventually(t, 10*time.Second, "the receiver to listen", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Start returned early: %v", err)
		default:
		}
		addr = r.Addr()
		return addr != nil
	})
	stopped := false
	var stopErr error
	stop := func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("Start did not return after its context ended")
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return scheme + "://" + addr.String(), stop
}

func doPost(t *testing.T, hc *http.Client, url, token string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStartHTTP(t *testing.T) {
	c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}))
	r := newTestReceiver(t, c, func(o *Options) { o.BindAddress = "127.0.0.1:0" })
	base, stop := startReceiver(t, r, "http")
	hc := &http.Client{Timeout: 10 * time.Second}
	body := mustJSON(t, payload(firing("fp", gpt4Labels)))

	if resp := doPost(t, hc, base+"/api/v1/alerts", testToken, body); resp.StatusCode != http.StatusNotFound {
		t.Errorf("other path: %d", resp.StatusCode)
	}
	if resp := doPost(t, hc, base+Path, "", body); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	if resp := doPost(t, hc, base+Path, testToken, body); resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
	if getRollout(t, c, "prod", "chat").Annotations[rolloutsv1.AnnotationAbort] == "" {
		t.Error("not patched")
	}
	if err := stop(); err != nil {
		t.Errorf("Start returned %v after shutdown, want nil", err)
	}
	if _, err := hc.Post(base+Path, "application/json", bytes.NewReader(body)); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestStartErrors(t *testing.T) {
	c := fakeClient(nil)
	r := newTestReceiver(t, c, nil)
	if err := r.Start(context.Background()); err == nil {
		t.Error("Start without BindAddress succeeded")
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = newTestReceiver(t, c, func(o *Options) { o.BindAddress, o.TLSCertFile, o.TLSKeyFile = "127.0.0.1:0", bad, bad })
	if err := r.Start(context.Background()); err == nil {
		t.Error("Start with an unusable certificate succeeded")
	}

	// The port is taken.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r = newTestReceiver(t, c, func(o *Options) { o.BindAddress = ln.Addr().String() })
	if err := r.Start(context.Background()); err == nil {
		t.Error("Start on a busy port succeeded")
	}
}

func TestStartTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	pool := writeSelfSigned(t, certFile, keyFile)

	c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhasePaused, map[string]string{"model": "gpt-4"}))
	r := newTestReceiver(t, c, func(o *Options) {
		o.BindAddress, o.TLSCertFile, o.TLSKeyFile = "127.0.0.1:0", certFile, keyFile
	})
	base, stop := startReceiver(t, r, "https")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp := doPost(t, hc, base+Path, testToken, mustJSON(t, payload(firing("fp", gpt4Labels))))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.TLS == nil {
		t.Error("not TLS")
	}
	if getRollout(t, c, "prod", "chat").Annotations[rolloutsv1.AnnotationAbort] == "" {
		t.Error("not patched")
	}
	// Plain HTTP to the TLS port is refused.
	plain := "http" + base[len("https"):]
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(plain+Path, "application/json", nil); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP accepted")
		}
	}
	if err := stop(); err != nil {
		t.Errorf("Start returned %v", err)
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and returns a pool that
// trusts it.
func writeSelfSigned(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "alert-receiver-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
