package analysis

// The attack suite of the analysis package: a hostile rollout author picks
// the Prometheus address, its OAuth2 token URL and the web gate URL, and
// controls the servers behind them. Every case asserts a refusal. Servers
// run on loopback; a dial guard fails any connection elsewhere, so that a
// missing check shows as a test failure, not as traffic.

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// loopbackOnly is the policy with the allowlist entries given, and a guard
// that fails a connection to anything but loopback.
func loopbackOnly(allow ...string) *egress.Policy {
	p := egress.MustNew(nil, allow)
	p.SetDialGuard(func(ap netip.AddrPort) error {
		if !ap.Addr().Unmap().IsLoopback() {
			return fmt.Errorf("test guard: the policy let %s through", ap)
		}
		return nil
	})
	return p
}

// bigVector is a valid instant-vector answer of about n bytes.
func bigVector(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"pod":"p%d"},"value":[1700000000,"1"]}`, i)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}

func TestAttackPrometheusAnswerSize(t *testing.T) {
	// 64 MiB of JSON whitespace inside a valid answer compresses to about
	// 64 KiB: a gzip bomb.
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	_, _ = zw.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[`))
	pad := bytes.Repeat([]byte(" "), 1<<20)
	for range 64 {
		_, _ = zw.Write(pad)
	}
	_, _ = zw.Write([]byte(`]}}`))
	_ = zw.Close()
	big := bigVector(256 << 10)

	cases := []struct {
		name  string
		limit int64
		serve http.HandlerFunc
	}{
		{"an answer over the limit", 64 << 10, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(big)
		}},
		{"a gzip bomb under the default limit", 0, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb.Bytes())
		}},
		{"a compressed answer over the limit", 64 << 10, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(big)
			_ = zw.Close()
		}},
		{"an answer that never ends well", 1 << 20, func(w http.ResponseWriter, _ *http.Request) {
			// 32 MiB of an unterminated answer.
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[`))
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			for range 512 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.serve)
			t.Cleanup(srv.Close)
			q, err := NewClient(ClientConfig{Address: srv.URL, MaxResponseBytes: c.limit, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err = q.Query(context.Background(), "up", time.Time{})
			runtime.ReadMemStats(&after)
			limit := c.limit
			if limit == 0 {
				limit = DefaultMaxResponseBytes
			}
			want := fmt.Sprintf("the answer is larger than the operator's limit of %d bytes (--prometheus-max-response-bytes)", limit)
			if !errors.Is(err, ErrQueryFailed) || !errors.Is(err, egress.ErrTooLarge) || !strings.Contains(err.Error(), want) {
				t.Fatalf("err=%v, want a query failure saying %q", err, want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d KiB for the refused answer (limit %d KiB)", alloc>>10, limit>>10)
			if alloc > uint64(6*limit)+(16<<20) {
				t.Errorf("allocated %d bytes for an answer limited to %d", alloc, limit)
			}
		})
	}

	// Through a gate, the refusal is an Error verdict with the message.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(big) }))
	t.Cleanup(srv.Close)
	q, err := NewClient(ClientConfig{Address: srv.URL, MaxResponseBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	g := v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Query: "sum(up)", Max: ptrFloat(1)}}
	r, err := RenderGate(g, Vars{Namespace: "ns", Rollout: "r", Stable: "s", Canary: "c", Interval: time.Minute, StepWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ev := EvaluateGate(context.Background(), q, g, r, time.Now())
	if ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, "larger than the operator's limit of 65536 bytes") {
		t.Fatalf("gate: %s %q, want an Error verdict naming the limit", ev.Verdict, ev.Message)
	}
}

func ptrFloat(f float64) *float64 { return &f }

// TestAttackPrometheusCompressedAnswerIsRead: the client asks for gzip,
// and reads a compressed answer within the limit.
func TestAttackPrometheusCompressedAnswerIsRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			http.Error(w, "gzip expected", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		fmt.Fprint(zw, vector("0.25"))
		_ = zw.Close()
	}))
	t.Cleanup(srv.Close)
	q, err := NewClient(ClientConfig{Address: srv.URL, MaxResponseBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := q.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 0.25 {
		t.Fatalf("%+v, %v", s, err)
	}
}

// TestAttackPrometheusSlowAnswer: a Prometheus that trickles its answer is
// cut at the query timeout.
func TestAttackPrometheusSlowAnswer(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	q, err := NewClient(ClientConfig{Address: srv.URL, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Query(context.Background(), "up", time.Time{})
	if !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "query timeout") {
		t.Fatalf("err=%v, want the query timeout", err)
	}
}

func TestAttackPrometheusAddresses(t *testing.T) {
	prom, srv := newFakeProm(t, map[string]string{"up": vector("1")})
	_ = prom
	cases := []struct {
		name   string
		cfg    ClientConfig
		policy *egress.Policy
		want   string
	}{
		{"loopback Prometheus without an allowlist entry", ClientConfig{Address: srv.URL}, loopbackOnly(), "is a loopback address"},
		{"AWS IPv6 metadata as the Prometheus address", ClientConfig{Address: "http://[fd00:ec2::254]:9090"}, loopbackOnly(), "AWS EC2 instance metadata over IPv6"},
		{"metadata as the Prometheus address, link-local allowed", ClientConfig{Address: "http://169.254.169.254"}, loopbackOnly("169.254.0.0/16"), "cloud instance metadata"},
		{"metadata in decimal", ClientConfig{Address: "http://2852039166"}, loopbackOnly("0.0.0.0/0"), "legacy spelling"},
		{"OAuth2 token URL on metadata", ClientConfig{Address: srv.URL, OAuth2: &OAuth2{ClientID: "client-id", ClientSecret: "client-secret-value",
			TokenURL: "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}}, loopbackOnly("127.0.0.0/8", "169.254.0.0/16"), "cloud instance metadata"},
		{"OAuth2 token URL on EKS Pod Identity over IPv6", ClientConfig{Address: srv.URL, OAuth2: &OAuth2{ClientID: "client-id", ClientSecret: "client-secret-value",
			TokenURL: "http://[fd00:ec2::23]/v1/credentials"}}, loopbackOnly("127.0.0.0/8"), "EKS Pod Identity agent over IPv6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.DialContext = c.policy.DialContext
			q, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = q.Query(context.Background(), "up", time.Time{})
			if !errors.Is(err, ErrQueryFailed) || !errors.Is(err, egress.ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err=%v, want an egress refusal mentioning %q", err, c.want)
			}
		})
	}
}

func TestAttackWebGateRedirects(t *testing.T) {
	var hits atomic.Int32
	other := serveWeb(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		t.Errorf("the other origin was called, with Authorization %q", r.Header.Get("Authorization"))
		fmt.Fprint(w, `{"score": 1}`)
	})
	var self string
	self = serveWeb(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/userinfo":
			http.Redirect(w, r, strings.Replace(self, "http://", "http://evil:pw@", 1)+"/score", http.StatusFound)
		case "/other-port":
			http.Redirect(w, r, other+"/score", http.StatusFound)
		case "/other-host":
			http.Redirect(w, r, strings.Replace(other, "127.0.0.1", "localhost", 1)+"/score", http.StatusFound)
		case "/other-scheme":
			http.Redirect(w, r, strings.Replace(self, "http://", "https://", 1)+"/score", http.StatusFound)
		default:
			if r.URL.User != nil || strings.Contains(r.Header.Get("Authorization"), "Basic") {
				t.Errorf("followed a redirect with credentials in the URL")
			}
			fmt.Fprint(w, `{"score": 1}`)
		}
	})
	cases := []struct{ path, want string }{
		{"/userinfo", "credentials in the URL"},
		{"/other-port", "another port"},
		{"/other-host", "another host"},
		{"/other-scheme", "another scheme"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			ev := evalWeb(t, loopback, webGate(self+c.path, "$.score"), WebAuth{BearerToken: "s3cret"})
			if ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, c.want) {
				t.Fatalf("%s: %q, want an Error saying %q", ev.Verdict, ev.Message, c.want)
			}
			if strings.Contains(ev.Message, "pw") || strings.Contains(ev.Message, "s3cret") {
				t.Errorf("the message quotes a credential: %q", ev.Message)
			}
		})
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests reached the other origin", hits.Load())
	}
}
