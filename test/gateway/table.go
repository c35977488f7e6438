package gateway

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Resolver maps a Service port (namespace, Service name, spec.ports[].port)
// to the addresses to dial ("127.0.0.1:<port>"). An error marks the
// backendRef invalid (requests picking it get 500); an empty result with no
// error means the Service has no ready endpoint (requests picking it get 503
// "no healthy upstream"). See [NewResolver] for the EndpointSlice convention.
type Resolver func(namespace, service string, port int32) ([]string, error)

// Table is an immutable routing table built by [BuildTable]. It is safe for
// concurrent use; a new table replaces an old one instead of mutating it.
type Table struct {
	entries  []entry
	rules    []*Rule
	warnings []string
}

// Rule is one HTTPRoute rule as routed by a [Table]. Its fields are read-only.
type Rule struct {
	// RouteNamespace and RouteName identify the HTTPRoute.
	RouteNamespace, RouteName string
	// Index is the rule's position in spec.rules; Name is its optional name.
	Index int
	Name  string
	// RequestTimeout is timeouts.request; 0 means none.
	RequestTimeout time.Duration
	// BackendRequestTimeout is timeouts.backendRequest (per upstream
	// attempt); 0 means none.
	BackendRequestTimeout time.Duration
	// Backends are the rule's backendRefs in spec order, weight 0 included.
	Backends []*Backend

	totalWeight int64
	headers     *headerModifier
}

// String returns "namespace/name rule N".
func (r *Rule) String() string {
	return fmt.Sprintf("%s/%s rule %d", r.RouteNamespace, r.RouteName, r.Index)
}

// Backend is one resolved backendRef. Its exported fields are read-only.
type Backend struct {
	// Group and Kind of the referenced object ("" and "Service" for a core
	// Service).
	Group, Kind string
	// Namespace, Name and Port of the referenced object.
	Namespace, Name string
	Port            int32
	// Weight is the effective weight (unset weight is 1).
	Weight int32
	// Cluster is the Envoy cluster name used in metrics, see [ClusterName];
	// empty for invalid backends.
	Cluster string
	// Endpoints are the addresses to dial, used round-robin. Empty means no
	// healthy upstream (503).
	Endpoints []string
	// Invalid is non-empty when the backendRef cannot be used; it is the
	// body of the 500 answered to requests that pick this backend.
	Invalid string

	headers *headerModifier
	next    atomic.Uint64
}

// nextEndpoint returns the next endpoint, round-robin.
func (b *Backend) nextEndpoint() (string, bool) {
	if len(b.Endpoints) == 0 {
		return "", false
	}
	n := b.next.Add(1) - 1
	return b.Endpoints[n%uint64(len(b.Endpoints))], true
}

// Pick chooses a backend with probability Weight/sum(Weights). Backends with
// weight 0 are never chosen. It returns nil when the weights sum to 0 (or the
// rule has no backendRefs). A nil rng uses the goroutine-safe global source
// of math/rand/v2; pass a seeded *rand.Rand for reproducible picks (a
// *rand.Rand is not safe for concurrent use).
func (r *Rule) Pick(rng *rand.Rand) *Backend {
	if r.totalWeight <= 0 {
		return nil
	}
	var x int64
	if rng != nil {
		x = rng.Int64N(r.totalWeight)
	} else {
		x = rand.Int64N(r.totalWeight)
	}
	for _, b := range r.Backends {
		if b.Weight <= 0 {
			continue
		}
		if x < int64(b.Weight) {
			return b
		}
		x -= int64(b.Weight)
	}
	return nil // unreachable: x < totalWeight
}

// Rules returns the rules of the table, by route (oldest first, then by
// namespace/name) and rule order.
func (t *Table) Rules() []*Rule { return t.rules }

// Warnings lists what the table ignored or could not honour (unsupported
// filters, match types, bad durations, ...). Invalid backends are reported in
// [Backend.Invalid] instead.
func (t *Table) Warnings() []string { return t.warnings }

// Route returns the rule that the request matches, honouring the Gateway API
// precedence rules, or false when none matches (answer 404).
func (t *Table) Route(req *http.Request) (*Rule, bool) {
	if t == nil {
		return nil, false
	}
	host := requestHost(req)
	var query url.Values
	var best *entry
	bestHost := hostScore{}
	for i := range t.entries {
		e := &t.entries[i]
		hs, ok := e.matchHost(host)
		if !ok || (best != nil && !hs.better(bestHost)) {
			continue
		}
		if len(e.queries) > 0 && query == nil {
			query = req.URL.Query()
		}
		if !e.matches(req, query) {
			continue
		}
		best, bestHost = e, hs
	}
	if best == nil {
		return nil, false
	}
	return best.rule, true
}

// entry is one HTTPRouteMatch of one rule, compiled.
type entry struct {
	rule      *Rule
	hostnames []string // lower case; empty matches any host

	pathType gatewayv1.PathMatchType
	path     string // Exact: value; PathPrefix: value without trailing "/"
	pathRE   *regexp.Regexp
	method   string
	headers  []valueCond
	queries  []valueCond

	created  time.Time
	routeKey string
	ruleIdx  int
	matchIdx int
}

// valueCond is one header or query param condition; re is nil for Exact.
type valueCond struct {
	name  string // canonical header name, or query param name
	value string
	re    *regexp.Regexp
}

func (c valueCond) ok(v string) bool {
	if c.re != nil {
		return c.re.MatchString(v)
	}
	return v == c.value
}

func (e *entry) matches(req *http.Request, query url.Values) bool {
	if e.method != "" && req.Method != e.method {
		return false
	}
	if !e.matchPath(req.URL.Path) {
		return false
	}
	for _, h := range e.headers {
		var v string
		if h.name == "Host" {
			v = req.Host
		} else {
			vals := req.Header.Values(h.name)
			if len(vals) == 0 {
				return false
			}
			v = strings.Join(vals, ",")
		}
		if !h.ok(v) {
			return false
		}
	}
	for _, q := range e.queries {
		vals, ok := query[q.name]
		if !ok || len(vals) == 0 || !q.ok(vals[0]) {
			return false
		}
	}
	return true
}

func (e *entry) matchPath(p string) bool {
	if p == "" {
		p = "/"
	}
	switch e.pathType {
	case gatewayv1.PathMatchExact:
		return p == e.path
	case gatewayv1.PathMatchPathPrefix:
		return PathPrefixMatches(e.path, p)
	case gatewayv1.PathMatchRegularExpression:
		return e.pathRE.MatchString(p)
	}
	return false
}

// PathPrefixMatches reports whether path matches the Gateway API PathPrefix
// prefix: element by element, ignoring a trailing "/" in the prefix. "/v1"
// matches "/v1", "/v1/" and "/v1/x" but not "/v1x"; "/" matches everything.
func PathPrefixMatches(prefix, path string) bool {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// hostScore ranks how specifically a route hostname matched: exact matches
// beat wildcards, then more characters win. The zero value is "route has no
// hostnames", which matches anything with the lowest rank.
type hostScore struct {
	exact bool
	chars int
}

func (a hostScore) better(b hostScore) bool {
	if a.exact != b.exact {
		return a.exact
	}
	return a.chars > b.chars
}

func (e *entry) matchHost(host string) (hostScore, bool) {
	if len(e.hostnames) == 0 {
		return hostScore{}, true
	}
	var best hostScore
	found := false
	for _, h := range e.hostnames {
		var s hostScore
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			// "*.example.com" matches "a.example.com" and "a.b.example.com",
			// never "example.com".
			if len(host) <= len(suffix) || !strings.HasSuffix(host, suffix) {
				continue
			}
			s = hostScore{exact: false, chars: len(h)}
		} else {
			if host != h {
				continue
			}
			s = hostScore{exact: true, chars: len(h)}
		}
		if !found || s.better(best) {
			best, found = s, true
		}
	}
	return best, found
}

// requestHost returns the lower-case request host without port.
func requestHost(req *http.Request) string {
	h := req.Host
	if h == "" && req.URL != nil {
		h = req.URL.Host
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func pathRank(t gatewayv1.PathMatchType) int {
	switch t {
	case gatewayv1.PathMatchExact:
		return 3
	case gatewayv1.PathMatchPathPrefix:
		return 2
	default:
		return 1
	}
}

// compareEntries orders entries by Gateway API match precedence; earlier
// wins.
func compareEntries(a, b entry) int {
	if c := cmp.Compare(pathRank(b.pathType), pathRank(a.pathType)); c != 0 {
		return c
	}
	if a.pathType == gatewayv1.PathMatchPathPrefix {
		if c := cmp.Compare(len(b.path), len(a.path)); c != 0 {
			return c
		}
	}
	if (a.method != "") != (b.method != "") {
		if a.method != "" {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(len(b.headers), len(a.headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.queries), len(a.queries)); c != 0 {
		return c
	}
	if c := a.created.Compare(b.created); c != 0 {
		return c
	}
	if c := strings.Compare(a.routeKey, b.routeKey); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ruleIdx, b.ruleIdx); c != 0 {
		return c
	}
	return cmp.Compare(a.matchIdx, b.matchIdx)
}

// BuildTable compiles routes into a routing table. It does not check
// parentRefs: pass the routes attached to the gateway (see [AttachedRoutes]).
// resolve is called for every backendRef to a core Service; it may be nil, in
// which case every Service backend has no endpoints. BuildTable never fails:
// what it cannot honour is listed in [Table.Warnings] or made an invalid
// backend.
func BuildTable(routes []gatewayv1.HTTPRoute, resolve Resolver) *Table {
	rs := make([]*gatewayv1.HTTPRoute, len(routes))
	for i := range routes {
		rs[i] = &routes[i]
	}
	slices.SortStableFunc(rs, func(a, b *gatewayv1.HTTPRoute) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})

	t := &Table{}
	warn := func(route *gatewayv1.HTTPRoute, format string, args ...any) {
		t.warnings = append(t.warnings, fmt.Sprintf("HTTPRoute %s/%s: ", route.Namespace, route.Name)+fmt.Sprintf(format, args...))
	}
	for _, route := range rs {
		var hostnames []string
		for _, h := range route.Spec.Hostnames {
			hostnames = append(hostnames, strings.ToLower(string(h)))
		}
		for ri := range route.Spec.Rules {
			spec := &route.Spec.Rules[ri]
			rule := buildRule(route, ri, spec, resolve, func(f string, a ...any) { warn(route, "rule %d: "+f, append([]any{ri}, a...)...) })
			t.rules = append(t.rules, rule)

			matches := spec.Matches
			if len(matches) == 0 {
				matches = []gatewayv1.HTTPRouteMatch{{}}
			}
			for mi := range matches {
				e, err := compileMatch(&matches[mi])
				if err != nil {
					warn(route, "rule %d match %d ignored: %v", ri, mi, err)
					continue
				}
				e.rule = rule
				e.hostnames = hostnames
				e.created = route.CreationTimestamp.Time
				e.routeKey = route.Namespace + "/" + route.Name
				e.ruleIdx = ri
				e.matchIdx = mi
				t.entries = append(t.entries, e)
			}
		}
	}
	slices.SortStableFunc(t.entries, compareEntries)
	return t
}

func compileMatch(m *gatewayv1.HTTPRouteMatch) (entry, error) {
	e := entry{pathType: gatewayv1.PathMatchPathPrefix, path: "/"}
	if m.Path != nil {
		if m.Path.Type != nil {
			e.pathType = *m.Path.Type
		}
		if m.Path.Value != nil {
			e.path = *m.Path.Value
		}
	}
	switch e.pathType {
	case gatewayv1.PathMatchExact:
	case gatewayv1.PathMatchPathPrefix:
		if p := strings.TrimRight(e.path, "/"); p != "" {
			e.path = p
		} else {
			e.path = "/"
		}
	case gatewayv1.PathMatchRegularExpression:
		re, err := regexp.Compile(`^(?:` + e.path + `)$`)
		if err != nil {
			return e, fmt.Errorf("path regular expression: %w", err)
		}
		e.pathRE = re
	default:
		return e, fmt.Errorf("unsupported path match type %q", e.pathType)
	}
	if m.Method != nil {
		e.method = string(*m.Method)
	}
	seen := map[string]bool{}
	for _, h := range m.Headers {
		name := http.CanonicalHeaderKey(string(h.Name))
		if seen[name] { // the spec: only the first entry with a name counts
			continue
		}
		seen[name] = true
		c, err := compileValue(name, h.Value, h.Type == nil || *h.Type == gatewayv1.HeaderMatchExact,
			h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression)
		if err != nil {
			return e, fmt.Errorf("header %s: %w", name, err)
		}
		e.headers = append(e.headers, c)
	}
	seen = map[string]bool{}
	for _, q := range m.QueryParams {
		name := string(q.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		c, err := compileValue(name, q.Value, q.Type == nil || *q.Type == gatewayv1.QueryParamMatchExact,
			q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression)
		if err != nil {
			return e, fmt.Errorf("query param %s: %w", name, err)
		}
		e.queries = append(e.queries, c)
	}
	return e, nil
}

func compileValue(name, value string, exact, regex bool) (valueCond, error) {
	switch {
	case exact:
		return valueCond{name: name, value: value}, nil
	case regex:
		re, err := regexp.Compile(`^(?:` + value + `)$`)
		if err != nil {
			return valueCond{}, err
		}
		return valueCond{name: name, value: value, re: re}, nil
	}
	return valueCond{}, fmt.Errorf("unsupported match type")
}

func buildRule(route *gatewayv1.HTTPRoute, idx int, spec *gatewayv1.HTTPRouteRule, resolve Resolver, warn func(string, ...any)) *Rule {
	r := &Rule{RouteNamespace: route.Namespace, RouteName: route.Name, Index: idx}
	if spec.Name != nil {
		r.Name = string(*spec.Name)
	}
	if to := spec.Timeouts; to != nil {
		var err error
		if to.Request != nil {
			if r.RequestTimeout, err = ParseDuration(string(*to.Request)); err != nil {
				warn("timeouts.request ignored: %v", err)
			}
		}
		if to.BackendRequest != nil {
			if r.BackendRequestTimeout, err = ParseDuration(string(*to.BackendRequest)); err != nil {
				warn("timeouts.backendRequest ignored: %v", err)
			}
		}
	}
	r.headers = buildHeaderModifier(spec.Filters, warn)
	if spec.Retry != nil {
		warn("retry is not supported (one attempt per request)")
	}
	for bi := range spec.BackendRefs {
		ref := &spec.BackendRefs[bi]
		b := resolveBackend(route.Namespace, ref, resolve)
		b.headers = buildHeaderModifier(ref.Filters, func(f string, a ...any) { warn("backendRef %d: "+f, append([]any{bi}, a...)...) })
		if b.Weight > 0 {
			r.totalWeight += int64(b.Weight)
		}
		r.Backends = append(r.Backends, b)
	}
	return r
}

func resolveBackend(routeNS string, ref *gatewayv1.HTTPBackendRef, resolve Resolver) *Backend {
	b := &Backend{Kind: "Service", Namespace: routeNS, Name: string(ref.Name), Weight: 1}
	if ref.Group != nil {
		b.Group = string(*ref.Group)
	}
	if ref.Kind != nil {
		b.Kind = string(*ref.Kind)
	}
	if ref.Namespace != nil {
		b.Namespace = string(*ref.Namespace)
	}
	if ref.Port != nil {
		b.Port = *ref.Port
	}
	if ref.Weight != nil {
		b.Weight = *ref.Weight
	}
	switch {
	case b.Group != "" || b.Kind != "Service":
		b.Invalid = fmt.Sprintf("backendRef %s %s/%s: unsupported backend kind: the test gateway only routes to core Services", groupKind(b.Group, b.Kind), b.Namespace, b.Name)
		return b
	case ref.Port == nil:
		b.Invalid = fmt.Sprintf("backendRef Service %s/%s: port is required", b.Namespace, b.Name)
		return b
	}
	b.Cluster = ClusterName(b.Namespace, b.Name, b.Port)
	if resolve == nil {
		return b
	}
	eps, err := resolve(b.Namespace, b.Name, b.Port)
	if err != nil {
		b.Invalid = fmt.Sprintf("backendRef Service %s/%s port %d: %v", b.Namespace, b.Name, b.Port, err)
		b.Cluster = ""
		return b
	}
	b.Endpoints = eps
	return b
}

func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return kind + "." + group
}

// headerModifier is a compiled RequestHeaderModifier filter.
type headerModifier struct {
	set, add [][2]string
	remove   []string
}

func buildHeaderModifier(filters []gatewayv1.HTTPRouteFilter, warn func(string, ...any)) *headerModifier {
	var m *headerModifier
	for _, f := range filters {
		if f.Type != gatewayv1.HTTPRouteFilterRequestHeaderModifier || f.RequestHeaderModifier == nil {
			warn("filter %q is not supported by the test gateway and is ignored", f.Type)
			continue
		}
		if m == nil {
			m = &headerModifier{}
		}
		for _, h := range f.RequestHeaderModifier.Set {
			m.set = append(m.set, [2]string{string(h.Name), h.Value})
		}
		for _, h := range f.RequestHeaderModifier.Add {
			m.add = append(m.add, [2]string{string(h.Name), h.Value})
		}
		m.remove = append(m.remove, f.RequestHeaderModifier.Remove...)
	}
	return m
}

func (m *headerModifier) apply(h http.Header) {
	if m == nil {
		return
	}
	for _, kv := range m.set {
		h.Set(kv[0], kv[1])
	}
	for _, kv := range m.add {
		h.Add(kv[0], kv[1])
	}
	for _, name := range m.remove {
		h.Del(name)
	}
}

var durationRE = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// ParseDuration parses a Gateway API (GEP-2257) duration such as "120s",
// "1h30m" or "500ms". "0s" yields 0, which callers treat as "no timeout".
func ParseDuration(s string) (time.Duration, error) {
	if !durationRE.MatchString(s) {
		return 0, fmt.Errorf("invalid Gateway API duration %q", s)
	}
	return time.ParseDuration(s)
}
