package controllers

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// epoch is the unit tests' fixed now.
var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func metaTime(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

func microTime(t time.Time) *rolloutsv1.MicroTime {
	m := rolloutsv1.NewMicroTime(metav1.NewMicroTime(t))
	return &m
}

func durationOf(s string) *rolloutsv1.Duration { d := rolloutsv1.Duration(s); return &d }
