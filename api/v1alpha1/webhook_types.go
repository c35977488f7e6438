package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookType says at which point of a rollout a webhook is called.
//
// +kubebuilder:validation:Enum=PreRollout;ConfirmPromotion;OnTransition
type WebhookType string

const (
	// WebhookPreRollout is called before any traffic moves. The first step
	// starts only once it answers 2xx; failureLimit failed answers in a row
	// roll the rollout back (the canary never had traffic).
	WebhookPreRollout WebhookType = "PreRollout"
	// WebhookConfirmPromotion is called before the last step (the one that
	// gives the canary all traffic). The rollout holds at its current step
	// until it answers 2xx. It never rolls back.
	WebhookConfirmPromotion WebhookType = "ConfirmPromotion"
	// WebhookOnTransition is a fire-and-forget notification of every phase
	// change. Its answer is ignored.
	WebhookOnTransition WebhookType = "OnTransition"
)

// Webhook is an HTTP call at a point of the rollout's life. The operator
// POSTs a JSON document (see docs/guides/webhooks.md) and reads only the status code.
//
// +kubebuilder:validation:XValidation:rule="!has(self.failureLimit) || self.type == 'PreRollout'",message="failureLimit applies to PreRollout webhooks only: ConfirmPromotion holds until it answers 2xx, OnTransition is not retried past its attempts"
type Webhook struct {
	// name identifies the webhook in status, events and the request.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// type is when the webhook is called: PreRollout, ConfirmPromotion or
	// OnTransition.
	//
	// +required
	Type WebhookType `json:"type"`

	// url receives the POST. The operator's egress policy decides which
	// addresses it may reach (--egress-allow).
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="url must be an http:// or https:// URL, e.g. http://eval-hook.ml.svc:8080/modelrollout"
	URL string `json:"url"`

	// timeout bounds one call.
	//
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="timeout must be between 1s and 10m"
	Timeout Duration `json:"timeout,omitempty"`

	// authSecretRef names a Secret in the rollout's namespace: key "token"
	// for a bearer token, or keys "username" and "password" for basic auth;
	// optional key "ca.crt" holds a PEM CA bundle for https.
	//
	// +optional
	AuthSecretRef *LocalObjectReference `json:"authSecretRef,omitempty"`

	// metadata is sent as is in every call, e.g. the eval suite to run or
	// the Slack channel to post to.
	//
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Metadata map[string]string `json:"metadata,omitempty"`

	// failureLimit is how many failed calls in a row (an answer other than
	// 2xx and 202, or no answer) roll a PreRollout webhook's rollout back.
	// Default 3. A 202 Accepted means "not yet": it is called again and
	// counts as no failure.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureLimit *int32 `json:"failureLimit,omitempty"`
}

// WebhookState is where a blocking webhook stands for the current attempt of
// the rollout.
//
// +kubebuilder:validation:Enum=Pending;Passed;Failed
type WebhookState string

const (
	// WebhookPending: called, or to be called, and not answered 2xx yet.
	WebhookPending WebhookState = "Pending"
	// WebhookPassed: answered 2xx for this attempt of the rollout.
	WebhookPassed WebhookState = "Passed"
	// WebhookFailed: a PreRollout webhook failed failureLimit times in a row.
	WebhookFailed WebhookState = "Failed"
)

// WebhookStatus records a blocking webhook (PreRollout, ConfirmPromotion)
// for the current attempt of the rollout. A retry or a new canary starts
// them afresh.
type WebhookStatus struct {
	// name of the webhook.
	//
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// type of the webhook.
	//
	// +required
	Type WebhookType `json:"type"`

	// state of the webhook for this attempt.
	//
	// +required
	State WebhookState `json:"state"`

	// calls counts the calls made for this attempt.
	//
	// +optional
	Calls int32 `json:"calls,omitempty"`

	// consecutiveFailures counts failed calls in a row.
	//
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// lastCallAt is when the latest call was made.
	//
	// +optional
	LastCallAt *metav1.Time `json:"lastCallAt,omitempty"`

	// nextCallAt is when the webhook is called again while it is pending.
	//
	// +optional
	NextCallAt *metav1.Time `json:"nextCallAt,omitempty"`

	// message is the latest answer: the status code and a short, sanitised
	// excerpt of the body, or why there was none.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Message string `json:"message,omitempty"`
}
