package alerts

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Labels that name a rollout directly.
const (
	LabelRollout   = "modelrollout"
	LabelNamespace = "namespace"
)

// TokenPrefix starts every abort token the receiver writes; the controller
// rolls back with reason AlertFiring for such tokens.
const TokenPrefix = "alert-"

// MaxReasonBytes bounds the abort-reason annotation (the controller copies it
// into status.rollback.message, limited to 1024 characters).
const MaxReasonBytes = 900

// index finds the rollouts an alert matches.
type index struct {
	items []rolloutsv1.ModelRollout
	// byName holds every rollout, for the modelrollout and namespace labels.
	// It is built on the first alert that carries both.
	byName map[types.NamespacedName]*rolloutsv1.ModelRollout
	// bySelector holds the rollouts with a non-empty selector under one label
	// pair of that selector: the one with the smallest name. Every alert label
	// pair is looked up, so a rollout whose selector the alert satisfies is
	// found through exactly that pair and then checked in full.
	bySelector map[labelPair][]*rolloutsv1.ModelRollout
}

type labelPair struct{ name, value string }

// newIndex indexes the rollouts. It keeps pointers into items and never
// modifies them, so items may be shared with a cache.
func newIndex(items []rolloutsv1.ModelRollout) *index {
	ix := &index{
		items:      items,
		bySelector: make(map[labelPair][]*rolloutsv1.ModelRollout),
	}
	for i := range items {
		ro := &items[i]
		sel := ro.Spec.RollbackOnAlerts
		if sel == nil || len(sel.MatchLabels) == 0 {
			continue
		}
		first := true
		var key labelPair
		for n, v := range sel.MatchLabels {
			if first || n < key.name {
				key, first = labelPair{n, v}, false
			}
		}
		ix.bySelector[key] = append(ix.bySelector[key], ro)
	}
	return ix
}

// match returns the rollouts the labels match, each once, the direct match
// first and the selector matches in index order.
func (ix *index) match(labels map[string]string) []*rolloutsv1.ModelRollout {
	var out []*rolloutsv1.ModelRollout
	var direct *rolloutsv1.ModelRollout
	name, okName := labels[LabelRollout]
	ns, okNS := labels[LabelNamespace]
	if okName && okNS {
		if ix.byName == nil {
			ix.byName = make(map[types.NamespacedName]*rolloutsv1.ModelRollout, len(ix.items))
			for i := range ix.items {
				ro := &ix.items[i]
				ix.byName[types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}] = ro
			}
		}
		if ro, ok := ix.byName[types.NamespacedName{Namespace: ns, Name: name}]; ok {
			direct = ro
			out = append(out, ro)
		}
	}
	start := len(out)
	// Every rollout is indexed under one pair, so each is seen at most once.
	for n, v := range labels {
		for _, ro := range ix.bySelector[labelPair{n, v}] {
			if ro != direct && selectorMatches(ro.Spec.RollbackOnAlerts.MatchLabels, labels) {
				out = append(out, ro)
			}
		}
	}
	// Map iteration order is random; keep the result stable.
	slices.SortFunc(out[start:], func(a, b *rolloutsv1.ModelRollout) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// selectorMatches reports whether every selector label is on the alert with
// the same value. An empty selector matches nothing.
func selectorMatches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for n, v := range sel {
		if got, ok := labels[n]; !ok || got != v {
			return false
		}
	}
	return true
}

// AbortToken is the abort annotation value for one firing of an alert: the
// same alert, repeated by Alertmanager, yields the same token.
func AbortToken(a *Alert) string {
	h := sha256.New()
	fp := a.Fingerprint
	if fp == "" {
		fp = labelsFingerprint(a.Labels)
	}
	h.Write([]byte(fp))
	h.Write([]byte{0})
	h.Write([]byte(a.StartsAt.UTC().Format(time.RFC3339Nano)))
	return TokenPrefix + hex.EncodeToString(h.Sum(nil))[:16]
}

// labelsFingerprint identifies a label set when Alertmanager sent none.
func labelsFingerprint(labels map[string]string) string {
	h := sha256.New()
	for _, n := range sortedKeys(labels) {
		h.Write([]byte(n))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[n]))
		h.Write([]byte{0xff})
	}
	return "labels:" + hex.EncodeToString(h.Sum(nil))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AbortReason describes a firing alert for the abort-reason annotation, e.g.
// `alert HighErrorRate{model="gpt-4",severity="critical"} firing`: the
// alertname, then the other labels sorted by name with quoted values, at most
// MaxReasonBytes bytes of valid UTF-8. Labels that do not fit are replaced by
// an ellipsis.
func AbortReason(a *Alert) string {
	const prefix, suffix, more = "alert ", " firing", "…"
	var b strings.Builder
	b.WriteString(prefix)
	// Room for the name and labels, keeping space for "{…}" and the suffix.
	budget := MaxReasonBytes - len(prefix) - len(suffix) - len("{"+more+"}")

	name := a.Labels["alertname"]
	if !isIdentifier(name, true) {
		name = strconv.Quote(name)
	}
	if len(name) > budget {
		name = truncateUTF8(name, budget-len(more)) + more
	}
	b.WriteString(name)
	budget -= len(name)

	first := true
	for _, n := range sortedKeys(a.Labels) {
		if n == "alertname" {
			continue
		}
		pair := n
		if !isIdentifier(n, false) {
			pair = strconv.Quote(n)
		}
		pair += "=" + strconv.Quote(a.Labels[n])
		sep := ","
		if first {
			sep = "{"
		}
		if len(sep)+len(pair) > budget {
			b.WriteString(sep)
			b.WriteString(more)
			first = false
			break
		}
		b.WriteString(sep)
		b.WriteString(pair)
		budget -= len(sep) + len(pair)
		first = false
	}
	if !first {
		b.WriteString("}")
	}
	b.WriteString(suffix)
	return b.String()
}

// isIdentifier reports whether s is a Prometheus label name, or, with colons,
// a metric name (which alertnames usually are).
func isIdentifier(s string, colons bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		case c >= '0' && c <= '9' && i > 0:
		case c == ':' && colons:
		default:
			return false
		}
	}
	return true
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
