package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MicroTime is a time written in RFC 3339 with microseconds, like
// metav1.MicroTime, that also reads the whole-second times earlier versions
// of the operator wrote (a status written before an upgrade).
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Format=date-time
type MicroTime struct {
	metav1.MicroTime `json:",inline"`
}

// NewMicroTime wraps t.
func NewMicroTime(t metav1.MicroTime) MicroTime { return MicroTime{MicroTime: t} }

// UnmarshalJSON reads an RFC 3339 time with or without fractional seconds.
func (t *MicroTime) UnmarshalJSON(b []byte) error {
	if err := t.MicroTime.UnmarshalJSON(b); err == nil {
		return nil
	}
	var whole metav1.Time
	if err := whole.UnmarshalJSON(b); err != nil {
		return err
	}
	t.MicroTime = metav1.NewMicroTime(whole.Time)
	return nil
}
