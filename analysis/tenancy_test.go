package analysis

import (
	"errors"
	"strings"
	"testing"
)

func TestEnforceNamespace(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`up`, `up{namespace="a"}`},
		{`sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))`,
			`sum(rate(http_requests_total{code=~"5..",namespace="a"}[5m])) / sum(rate(http_requests_total{namespace="a"}[5m]))`},
		{`up{namespace="a"}`, `up{namespace="a"}`},
		{`max_over_time(up[10m:1m]) or vector(0)`, `max_over_time(up{namespace="a"}[10m:1m]) or vector(0)`},
		{`{__name__=~"vllm:.*"}`, `{__name__=~"vllm:.*",namespace="a"}`},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket{service="s"}[1m])))`,
			`histogram_quantile(0.99, sum by (le) (rate(x_bucket{namespace="a",service="s"}[1m])))`},
		{`1 + 2`, `1 + 2`},
	} {
		got, err := EnforceNamespace(tc.in, "a")
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
		if err := ValidateQuery(got); err != nil {
			t.Errorf("%s: the enforced query does not parse: %v", got, err)
		}
	}
}

func TestEnforceNamespaceRefuses(t *testing.T) {
	for _, tc := range []struct{ in, says string }{
		{`up{namespace="b"}`, `names namespace "b"`},
		{`sum(up) + sum(up{namespace="b"})`, `names namespace "b"`},
		{`up{namespace=""}`, `names namespace ""`},
		{`up{namespace=~"a|b"}`, `matches namespaces with =~ "a|b"`},
		{`up{namespace=~".*"}`, `matches namespaces with =~ ".*"`},
		{`up{namespace!="a"}`, `matches namespaces with != "a"`},
		{`up{namespace!~"a"}`, `matches namespaces with !~ "a"`},
		{`up{namespace="a",namespace!="b"}`, `matches namespaces with != "b"`},
		{`rate(up{namespace="b"}[5m])`, `names namespace "b"`},
	} {
		_, err := EnforceNamespace(tc.in, "a")
		if err == nil {
			t.Errorf("%s: accepted", tc.in)
			continue
		}
		if !errors.Is(err, ErrTenancy) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), `own namespace "a"`) {
			t.Errorf("%s: %v; want it to say %q", tc.in, err, tc.says)
		}
	}
}

func TestEnforceGateNamespace(t *testing.T) {
	r, err := EnforceGateNamespace(RenderedGate{Query: `sum(a)`, RequestsQuery: `sum(b)`}, "a")
	if err != nil || r.Query != `sum(a{namespace="a"})` || r.RequestsQuery != `sum(b{namespace="a"})` {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := EnforceGateNamespace(RenderedGate{Query: `sum(a)`, RequestsQuery: `sum(b{namespace="z"})`}, "a"); err == nil || !strings.HasPrefix(err.Error(), "requestsQuery: ") {
		t.Fatalf("requests query from another namespace: %v", err)
	}
}
