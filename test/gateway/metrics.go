package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Envoy metric and label names, as Envoy's Prometheus stats export spells
// them (cluster.<name>.upstream_rq_2xx becomes
// envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="<name>"}).
const (
	MetricUpstreamRqTotal         = "envoy_cluster_upstream_rq_total"
	MetricUpstreamRqXX            = "envoy_cluster_upstream_rq_xx"
	MetricUpstreamRq              = "envoy_cluster_upstream_rq"
	MetricUpstreamRqCompleted     = "envoy_cluster_upstream_rq_completed"
	MetricUpstreamRqTimeout       = "envoy_cluster_upstream_rq_timeout"
	MetricUpstreamRqPerTryTimeout = "envoy_cluster_upstream_rq_per_try_timeout"
	MetricUpstreamCxConnectFail   = "envoy_cluster_upstream_cx_connect_fail"
	MetricUpstreamCxNoneHealthy   = "envoy_cluster_upstream_cx_none_healthy"
	MetricUpstreamRqActive        = "envoy_cluster_upstream_rq_active"
	MetricUpstreamRqTime          = "envoy_cluster_upstream_rq_time" // histogram, milliseconds

	LabelClusterName       = "envoy_cluster_name"
	LabelResponseCodeClass = "envoy_response_code_class"
	LabelResponseCode      = "envoy_response_code"
)

// EnvoyHistogramBuckets are Envoy's default histogram bucket bounds (the
// stats_config histogram_bucket_settings default), in the unit of the
// histogram: milliseconds for upstream_rq_time.
var EnvoyHistogramBuckets = []float64{
	0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
	30000, 60000, 300000, 600000, 1800000, 3600000,
}

type metrics struct {
	reg           *prometheus.Registry
	rqTotal       *prometheus.CounterVec
	rqXX          *prometheus.CounterVec
	rqCode        *prometheus.CounterVec
	rqCompleted   *prometheus.CounterVec
	rqTimeout     *prometheus.CounterVec
	rqPerTry      *prometheus.CounterVec
	cxConnectFail *prometheus.CounterVec
	cxNoneHealthy *prometheus.CounterVec
	rqActive      *prometheus.GaugeVec
	rqTime        *prometheus.HistogramVec
}

func newMetrics() *metrics {
	cl := []string{LabelClusterName}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string{}, cl...), labels...))
	}
	m := &metrics{
		reg:           prometheus.NewRegistry(),
		rqTotal:       counter(MetricUpstreamRqTotal, "Total upstream requests (counted when the request gets an upstream connection)."),
		rqXX:          counter(MetricUpstreamRqXX, "Upstream responses by response code class, including gateway-generated 503/504.", LabelResponseCodeClass),
		rqCode:        counter(MetricUpstreamRq, "Upstream responses by response code, including gateway-generated 503/504.", LabelResponseCode),
		rqCompleted:   counter(MetricUpstreamRqCompleted, "Upstream requests that got a response code (upstream or gateway-generated)."),
		rqTimeout:     counter(MetricUpstreamRqTimeout, "Requests that hit the route timeouts.request."),
		rqPerTry:      counter(MetricUpstreamRqPerTryTimeout, "Requests that hit the route timeouts.backendRequest."),
		cxConnectFail: counter(MetricUpstreamCxConnectFail, "Upstream connection failures."),
		cxNoneHealthy: counter(MetricUpstreamCxNoneHealthy, "Requests answered 503 because the cluster had no healthy endpoint."),
		rqActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricUpstreamRqActive, Help: "Upstream requests in flight.",
		}, cl),
		rqTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricUpstreamRqTime,
			Help:    "Upstream request time in milliseconds, from dispatch to the end of the response body.",
			Buckets: EnvoyHistogramBuckets,
		}, cl),
	}
	m.reg.MustRegister(m.rqTotal, m.rqXX, m.rqCode, m.rqCompleted, m.rqTimeout, m.rqPerTry,
		m.cxConnectFail, m.cxNoneHealthy, m.rqActive, m.rqTime)
	return m
}

// touch creates the fixed per-cluster series at 0, like Envoy does for a
// known cluster. Per-code series appear on first use, as in Envoy.
func (m *metrics) touch(cluster string) {
	m.rqTotal.WithLabelValues(cluster)
	m.rqCompleted.WithLabelValues(cluster)
	m.rqTimeout.WithLabelValues(cluster)
	m.rqPerTry.WithLabelValues(cluster)
	m.cxConnectFail.WithLabelValues(cluster)
	m.cxNoneHealthy.WithLabelValues(cluster)
	m.rqActive.WithLabelValues(cluster)
	m.rqTime.WithLabelValues(cluster)
}

// chargeCode records a response code for a cluster, like Envoy's
// chargeUpstreamCode.
func (m *metrics) chargeCode(cluster string, code int) {
	m.rqXX.WithLabelValues(cluster, strconv.Itoa(code/100)).Inc()
	m.rqCode.WithLabelValues(cluster, strconv.Itoa(code)).Inc()
	m.rqCompleted.WithLabelValues(cluster).Inc()
}

func (m *metrics) observeTime(cluster string, d time.Duration) {
	m.rqTime.WithLabelValues(cluster).Observe(float64(d) / float64(time.Millisecond))
}
