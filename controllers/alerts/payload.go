package alerts

import (
	"encoding/json"
	"errors"
	"time"
)

// PayloadVersion is the only Alertmanager webhook payload version accepted.
const PayloadVersion = "4"

// Alert statuses used by Alertmanager.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Payload is the body Alertmanager POSTs to a webhook receiver (version 4).
type Payload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a Payload. Its Status, not the payload's, says
// whether it fires.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Firing reports whether the alert is firing.
func (a *Alert) Firing() bool { return a.Status == StatusFiring }

var (
	errMalformed   = errors.New("malformed JSON payload")
	errBadVersion  = errors.New(`unsupported payload version, want "4"`)
	errNotAnObject = errors.New("payload is not a JSON object")
)

// ParsePayload decodes and checks an Alertmanager webhook body. Unknown
// fields are ignored; the version must be "4".
func ParsePayload(body []byte) (*Payload, error) {
	var p *Payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, errMalformed
	}
	if p == nil { // the body was the JSON literal null
		return nil, errNotAnObject
	}
	if p.Version != PayloadVersion {
		return nil, errBadVersion
	}
	return p, nil
}
