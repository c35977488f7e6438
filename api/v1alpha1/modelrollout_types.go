package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Defaulting strategy: scalar and list defaults are declared in the CRD with
// +kubebuilder:default, so the API server fills them in and `kubectl get -o yaml`
// shows the values the controller acts on. The controller never writes spec.

// ModelRolloutSpec is what the user declares: which routes to manage, which
// backend is stable, which is the canary, and how traffic moves between them.
//
// +kubebuilder:validation:XValidation:rule="!has(self.canary) || self.canary.name != self.stable.name || self.canary.kind != self.stable.kind",message="canary must name a different backend than stable; to finish a rollout, move the canary into stable and remove canary"
type ModelRolloutSpec struct {
	// routes lists the HTTPRoutes, in the rollout's namespace, whose weights this
	// rollout manages. All of them move in lockstep: every step sets the same
	// weights on every managed rule of every route.
	//
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Routes []RouteTarget `json:"routes"`

	// stable is the backend that serves production traffic today. Its
	// backendRefs in the managed rules get weight 100 - w while the canary has w.
	//
	// +required
	Stable BackendRef `json:"stable"`

	// canary is the new version. Setting or changing it starts a new rollout at
	// the first step. Without a canary the rollout is Idle and touches nothing.
	//
	// +optional
	Canary *BackendRef `json:"canary,omitempty"`

	// steps is the schedule: the canary's share of traffic in percent and how
	// long each share bakes before the next. Weights are strictly increasing and
	// the last one is 100. Defaults to 10% 30m, 25% 30m, 50% 1h, 75% 1h, 100% 1h.
	//
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:XValidation:rule="self[size(self)-1].weight == 100",message="the last step must have weight 100, so that a successful rollout ends with all traffic on the canary"
	// +kubebuilder:validation:XValidation:rule="self.map(s, s.weight).isSorted() && self.all(s, self.exists_one(t, t.weight == s.weight))",message="step weights must be strictly increasing, e.g. 10, 25, 50, 75, 100"
	// +kubebuilder:default={{weight:10,pause:"30m"},{weight:25,pause:"30m"},{weight:50,pause:"1h"},{weight:75,pause:"1h"},{weight:100,pause:"1h"}}
	Steps []Step `json:"steps,omitempty"`

	// paused holds the rollout at its current step: weights stay where they are
	// and no step advances until paused is false again. Gates keep being
	// evaluated and a failing gate still rolls back.
	//
	// +optional
	Paused bool `json:"paused,omitempty"`

	// progressDeadline bounds how long the rollout waits for its preconditions
	// (the routes exist and reference the stable backend, the canary has ready
	// endpoints). When it passes, the rollout is Stalled; if the canary already
	// had traffic, it is rolled back.
	//
	// +optional
	// +kubebuilder:default="10m"
	ProgressDeadline *Duration `json:"progressDeadline,omitempty"`

	// analysis declares the Prometheus gates evaluated at every step.
	//
	// +optional
	Analysis *Analysis `json:"analysis,omitempty"`

	// deletionPolicy says what deleting the rollout does to the routes while
	// its canary holds traffic (Waiting after the first step, Progressing or
	// Paused). ReturnToStable (the default) sets every managed rule back to
	// the stable backend before the rollout goes away, through the
	// finalizer rollouts.modelrollout.io/routes. KeepWeights leaves the
	// weights as they are. Deleting an Idle, Succeeded or RolledBack rollout
	// never changes a weight, whatever this says.
	//
	// +optional
	// +kubebuilder:default=ReturnToStable
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// allowStableSwing lets the rollout send traffic back to spec.stable from
	// a canary that holds 100% of it, when spec.canary is replaced or removed
	// while spec.stable still names the old stable. Off by default: the stable
	// of a finished rollout may be scaled down, so the rollout waits (reason
	// CanaryHoldsAllTraffic) until spec.stable names the backend that serves
	// the traffic.
	//
	// +optional
	AllowStableSwing bool `json:"allowStableSwing,omitempty"`

	// canaryUnavailableGrace is how long a canary that already has traffic may
	// be unavailable (its Service gone or without ready endpoints, its
	// InferencePool gone or refused by a gateway) before the rollout rolls
	// back with reason CanaryUnavailable.
	//
	// +optional
	// +kubebuilder:default="30s"
	CanaryUnavailableGrace *Duration `json:"canaryUnavailableGrace,omitempty"`

	// rollbackOnAlerts rolls the rollout back as soon as the operator's
	// Alertmanager receiver gets a firing alert whose labels include all of
	// these. Alerts that carry the labels modelrollout=<name> and
	// namespace=<namespace> always match, with or without this field.
	//
	// +optional
	RollbackOnAlerts *AlertSelector `json:"rollbackOnAlerts,omitempty"`

	// capacityFactor turns on capacity-aware steps. Before a step raises the
	// canary's weight to w, the canary must have at least
	// ceil(ready stable × w / 100 × capacityFactor) ready endpoints (for an
	// InferencePool: Ready pods its selector picks). While it has fewer, the
	// rollout holds at its current weight with reason WaitingForCapacity,
	// and the hold counts toward progressDeadline. 1 asks for as many ready
	// canary endpoints per share of traffic as stable has; 0.5 for half as
	// many. Off when absent.
	//
	// +optional
	// +kubebuilder:validation:XValidation:rule="self > 0.0 && self <= 10.0",message="capacityFactor must be greater than 0 and at most 10, e.g. 1 for as many ready canary endpoints per share of traffic as stable has"
	CapacityFactor *float64 `json:"capacityFactor,omitempty"`

	// scaleDownDelay is how long after success the old stable's workload,
	// and after a rollback the failed canary's, keeps its replicas before
	// it is scaled to zero. Used only with a workloadRef on stable or
	// canary.
	//
	// +optional
	// +kubebuilder:default="10m"
	ScaleDownDelay *Duration `json:"scaleDownDelay,omitempty"`

	// webhooks are called at points of the rollout's life: PreRollout before
	// any traffic moves (it blocks the start, and rolls back on failure),
	// ConfirmPromotion before the last step (it holds until it answers
	// 2xx), OnTransition on every phase change (a notification).
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Webhooks []Webhook `json:"webhooks,omitempty"`
}

// DeletionPolicy says what deleting a rollout does to the routes.
//
// +kubebuilder:validation:Enum=ReturnToStable;KeepWeights
type DeletionPolicy string

const (
	// DeletionReturnToStable returns the canary's traffic to stable before the
	// rollout is deleted.
	DeletionReturnToStable DeletionPolicy = "ReturnToStable"
	// DeletionKeepWeights leaves the weights as they are.
	DeletionKeepWeights DeletionPolicy = "KeepWeights"
)

// FinalizerRoutes is the finalizer through which a deleted rollout returns
// its canary's traffic to stable. It never blocks deletion when the routes
// are gone or the namespace is being deleted.
const FinalizerRoutes = "rollouts.modelrollout.io/routes"

// AnnotationRuleOwners, on an HTTPRoute, records which rollout manages each
// rule: a JSON object from rule key (the rule's name, or "#<index>" for an
// unnamed rule) to rollout name. The rollout writes its entries in the same
// patch as its first weights and removes them when it goes Idle, so at most
// one rollout manages a rule; a second one waits with reason RouteConflict.
const AnnotationRuleOwners = "rollouts.modelrollout.io/rule-owners"

// AnnotationAppliedWeights, on an HTTPRoute, records the weights each rollout
// last wrote to it: a JSON object from rollout name to the weights, e.g.
// {"gpt4":"Service/vllm-gpt4-v1:8000=75, Service/vllm-gpt4-v2:8000=25"}. It
// is written in the same patch as the weights, so it says durably whether
// a rollout's decision reached the route: managed weights that differ from
// the entry were changed by another writer (drift); an entry that differs
// from the rollout's current decision means its write has not landed yet.
const AnnotationAppliedWeights = "rollouts.modelrollout.io/applied-weights"

// LabelHeaderRouteOf, on an HTTPRoute the rollout created for a
// header-routed step, names the rollout. The route also has an
// ownerReference (controller) to the rollout, so that it is garbage
// collected with it and tools such as Argo CD show it as its child. It has
// no other label of the user's route: see config/argocd.
const LabelHeaderRouteOf = "rollouts.modelrollout.io/header-route-of"

// RouteTarget names one HTTPRoute and, optionally, the rules of it to manage.
type RouteTarget struct {
	// name of the HTTPRoute, in the rollout's namespace.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// rules restricts management to the rules with these names
	// (spec.rules[].name). When empty, every rule whose backendRefs include the
	// stable backend is managed. Rules that do not reference the stable backend
	// are never touched.
	//
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	Rules []RuleName `json:"rules,omitempty"`
}

// RuleName is the name of an HTTPRoute rule (Gateway API SectionName syntax).
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
type RuleName string

// BackendKind is the kind of a backend a ModelRollout moves traffic between.
//
// +kubebuilder:validation:Enum=Service;InferencePool
type BackendKind string

const (
	// BackendKindService is a core Service.
	BackendKindService BackendKind = "Service"
	// BackendKindInferencePool is a Gateway API Inference Extension InferencePool.
	BackendKindInferencePool BackendKind = "InferencePool"
)

const (
	// InferenceGroup is the API group of InferencePool (v1).
	InferenceGroup = "inference.networking.k8s.io"
	// InferenceGroupAlpha is the API group of the alpha InferencePool.
	InferenceGroupAlpha = "inference.networking.x-k8s.io"
)

// BackendRef names a backend, as it appears in an HTTPRoute's backendRefs.
//
// +kubebuilder:validation:XValidation:rule="self.kind != 'Service' || has(self.port)",message="port is required when kind is Service"
// +kubebuilder:validation:XValidation:rule="self.kind == 'Service' ? (!has(self.group) || size(self.group) == 0) : (has(self.group) && self.group in ['inference.networking.k8s.io', 'inference.networking.x-k8s.io'])",message="kind Service takes the core group \"\"; kind InferencePool takes group inference.networking.k8s.io (or inference.networking.x-k8s.io)"
type BackendRef struct {
	// group of the backend: "" (core) for a Service, inference.networking.k8s.io
	// for an InferencePool.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// kind of the backend: Service (default) or InferencePool.
	//
	// +optional
	// +kubebuilder:default=Service
	Kind BackendKind `json:"kind,omitempty"`

	// name of the backend in the rollout's namespace.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// port of the backend. Required for a Service; an InferencePool's
	// backendRef usually has none.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`

	// workloadRef names the workload that serves this backend (a
	// Deployment, or anything with a scale subresource), in the rollout's
	// namespace. With it, the rollout hands the workload off: spec.scaleDownDelay
	// after success the old stable's workload is scaled to zero, and after a
	// rollback the failed canary's; its replicas before are kept in the
	// annotation rollouts.modelrollout.io/replicas-before-scale-down, and a
	// retry restores them. It needs the opt-in RBAC of
	// config/rbac/workload-handoff (chart value workloadHandoff.enabled).
	// It is no part of the backend's identity: adding it does not start a
	// new rollout.
	//
	// +optional
	WorkloadRef *WorkloadRef `json:"workloadRef,omitempty"`
}

// WorkloadRef names a workload with a scale subresource.
type WorkloadRef struct {
	// group of the workload's kind, e.g. apps.
	//
	// +optional
	// +kubebuilder:default=apps
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// kind of the workload, e.g. Deployment, StatefulSet, or a custom kind
	// with a scale subresource.
	//
	// +optional
	// +kubebuilder:default=Deployment
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	Kind string `json:"kind,omitempty"`

	// name of the workload, in the rollout's namespace.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// AnnotationReplicasBeforeScaleDown, on a workload the rollout scaled to
// zero, records its replicas before, so that a retry restores them.
const AnnotationReplicasBeforeScaleDown = "rollouts.modelrollout.io/replicas-before-scale-down"

// WorkloadActionType is what the rollout does to a workload.
//
// +kubebuilder:validation:Enum=ScaleDown;Restore
type WorkloadActionType string

const (
	// WorkloadScaleDown scales the workload to zero, after recording its
	// replicas in AnnotationReplicasBeforeScaleDown.
	WorkloadScaleDown WorkloadActionType = "ScaleDown"
	// WorkloadRestore scales the workload back to the replicas recorded in
	// AnnotationReplicasBeforeScaleDown and removes the annotation.
	WorkloadRestore WorkloadActionType = "Restore"
)

// WorkloadAction is a pending change of a workload's replicas.
type WorkloadAction struct {
	// workloadRef names the workload.
	//
	// +required
	WorkloadRef WorkloadRef `json:"workloadRef"`

	// action is ScaleDown or Restore.
	//
	// +required
	Action WorkloadActionType `json:"action"`

	// at is when the action falls due.
	//
	// +required
	At metav1.Time `json:"at"`

	// why the action was scheduled, e.g. "old stable after success".
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Why string `json:"why,omitempty"`
}

// Step is one stage of the schedule.
//
// +kubebuilder:validation:XValidation:rule="self.weight > 0 || has(self.match)",message="weight 0 is allowed only on a step with a match (a dark launch that sends only matching requests to the canary): set weight to at least 1, or add match.headers or match.queryParams"
type Step struct {
	// weight is the canary's share of traffic in percent during this step; the
	// stable backend gets 100 - weight. It may be 0 only on a step with a
	// match: a dark launch, where only the matching requests reach the canary.
	//
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`

	// pause is how long the step bakes before the next one, provided every gate
	// passes. Absent means "wait for a manual promote".
	//
	// +optional
	Pause *Duration `json:"pause,omitempty"`

	// match sends the requests that match it to the canary during this step,
	// whatever the weight: a dark launch (weight 0) or an A/B step. The
	// rollout creates an HTTPRoute of its own for it (see
	// status.headerRoute), never a rule in the user's route; the other
	// requests stay on the step's weight.
	//
	// +optional
	Match *StepMatch `json:"match,omitempty"`
}

// StepMatch is the extra condition a request must meet to reach the canary
// during a header-routed step. It is ANDed with each match of every managed
// rule, so it narrows what those rules already route, and never widens it.
//
// +kubebuilder:validation:XValidation:rule="(has(self.headers) && size(self.headers) > 0) || (has(self.queryParams) && size(self.queryParams) > 0)",message="match needs at least one header or query parameter, e.g. headers: [{name: x-ab-test-group, value: canary}]"
type StepMatch struct {
	// headers the request must carry, in Gateway API HTTPHeaderMatch syntax
	// (type Exact, the default, or RegularExpression). All must match.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Headers []gatewayv1.HTTPHeaderMatch `json:"headers,omitempty"`

	// queryParams the request must carry, in Gateway API HTTPQueryParamMatch
	// syntax. All must match.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	QueryParams []gatewayv1.HTTPQueryParamMatch `json:"queryParams,omitempty"`
}

// Duration is a Gateway API style duration: one to four groups of up to five
// digits, each followed by h, m, s or ms, e.g. 30s, 5m, 1h30m, 500ms.
//
// +kubebuilder:validation:MaxLength=24
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]{1,5}(h|m|s|ms)){1,4}$')",message="must be a duration such as 30s, 5m or 1h30m (units h, m, s, ms)"
type Duration string

// ModelRolloutStatus is what the controller observed and decided. It holds
// all rollout state: a restarted controller resumes from it.
type ModelRolloutStatus struct {
	// observedGeneration is the metadata.generation the status was computed for.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarises where the rollout is. See the Phase constants.
	//
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// revision identifies the stable and canary pair the rest of this status
	// belongs to. When spec.stable or spec.canary changes, a new rollout starts.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Revision string `json:"revision,omitempty"`

	// stable is the stable backend of this revision. The managed rules give it
	// 100 - canaryWeight.
	//
	// +optional
	Stable *BackendRef `json:"stable,omitempty"`

	// canary is the canary backend of this revision. The managed rules give it
	// canaryWeight once the first step has started.
	//
	// +optional
	Canary *BackendRef `json:"canary,omitempty"`

	// retiring lists backends that had traffic in an earlier revision (a
	// replaced or removed canary, a replaced stable) and are held at weight 0
	// in the managed rules until the routes show it. Together with stable,
	// canary and canaryWeight, it says everything the routes must become.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Retiring []BackendRef `json:"retiring,omitempty"`

	// removing lists backends whose backendRefs the finish of a rollout
	// removes from the managed rules: the old stable, once spec.stable names
	// the canary that holds all traffic after success. Nothing else of the
	// rules changes. The rollout goes Idle once no managed rule references
	// them. See docs/guides/finishing.md.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Removing []BackendRef `json:"removing,omitempty"`

	// workloads lists the pending workload handoffs (see
	// spec.stable.workloadRef): the old stable's scale-down after success,
	// the failed canary's after a rollback, the canary's restore on a
	// retry. An action leaves the list once done. They outlive the rollout
	// that scheduled them: a finish does not cancel the old stable's
	// scale-down. An action on the workload of spec.stable, or of a canary
	// that is not rolled back, is dropped.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Workloads []WorkloadAction `json:"workloads,omitempty"`

	// currentStepIndex is the zero-based index into stepWeights of the step
	// in force. Absent before the first step has started.
	//
	// +optional
	CurrentStepIndex *int32 `json:"currentStepIndex,omitempty"`

	// stepWeights are the weights of the steps the rollout walks: those of
	// spec.steps, except while a step that an edit of spec.steps removed
	// still bakes (see docs/concepts/edits.md): its weight then stays in the
	// list, at currentStepIndex, until it has baked.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=21
	StepWeights []int32 `json:"stepWeights,omitempty"`

	// stepPause is the pause of the step in force; absent when it waits for
	// a promote. A step that an edit of spec.steps removed bakes for it.
	//
	// +optional
	StepPause *Duration `json:"stepPause,omitempty"`

	// step is currentStepIndex+1 over the number of stepWeights, e.g. "2/5",
	// for display.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Step string `json:"step,omitempty"`

	// canaryWeight is the canary weight, in percent, that the controller holds
	// the managed backendRefs at.
	//
	// +optional
	CanaryWeight int32 `json:"canaryWeight"`

	// headerRoute is set while the current step has a match: the HTTPRoutes
	// the rollout owns that send the matching requests to the canary, and
	// the match. The routes are created when such a step starts and deleted
	// when a step without a match follows, on rollback, on success and when
	// the rollout is deleted.
	//
	// +optional
	HeaderRoute *HeaderRouteStatus `json:"headerRoute,omitempty"`

	// stepStartedAt is when the routes came to carry the current step's
	// weight (and its header route), to the microsecond. The pause of the
	// step counts from here, so a restarted controller keeps the remaining
	// time. Absent while the routes do not carry the step.
	//
	// +optional
	StepStartedAt *MicroTime `json:"stepStartedAt,omitempty"`

	// promoted is true when the current step's pause was ended early by a
	// promote. The step still advances only once its gates pass.
	//
	// +optional
	Promoted bool `json:"promoted,omitempty"`

	// startedAt is when this revision's rollout started.
	//
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// waitingSince is when the preconditions were first seen unmet, while they
	// still are. progressDeadline counts from here.
	//
	// +optional
	WaitingSince *metav1.Time `json:"waitingSince,omitempty"`

	// canaryUnavailableSince is when the canary was first seen unavailable
	// while it had traffic, while it still is. spec.canaryUnavailableGrace
	// counts from here.
	//
	// +optional
	CanaryUnavailableSince *metav1.Time `json:"canaryUnavailableSince,omitempty"`

	// message is a human-readable summary of the current state.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// rollback records why and when the canary was taken out of traffic, while
	// phase is RolledBack.
	//
	// +optional
	Rollback *RollbackStatus `json:"rollback,omitempty"`

	// stepHistory lists when each step of this revision started and ended.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	StepHistory []StepRecord `json:"stepHistory,omitempty"`

	// gates holds the latest evaluations of every gate in this step, with a
	// short history, so every decision can be explained.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Gates []GateStatus `json:"gates,omitempty"`

	// capacity is set while the rollout waits for the canary to have enough
	// ready endpoints for the next step's weight (spec.capacityFactor).
	//
	// +optional
	Capacity *CapacityStatus `json:"capacity,omitempty"`

	// webhooks records the blocking webhooks (PreRollout, ConfirmPromotion)
	// of the current attempt of the rollout.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Webhooks []WebhookStatus `json:"webhooks,omitempty"`

	// lastHandledPromote is the value of the promote annotation that was last
	// acted on. Likewise for abort and retry.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastHandledPromote string `json:"lastHandledPromote,omitempty"`

	// lastHandledAbort is the value of the abort annotation that was last acted on.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastHandledAbort string `json:"lastHandledAbort,omitempty"`

	// lastHandledRetry is the value of the retry annotation that was last acted on.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastHandledRetry string `json:"lastHandledRetry,omitempty"`

	// lastHandledPromoteFull is the value of the promote-full annotation that
	// was last acted on, whether it was applied or ignored.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastHandledPromoteFull string `json:"lastHandledPromoteFull,omitempty"`

	// lastHandledSkipGates is the value of the skip-gates annotation that was
	// last acted on, whether it was applied or ignored.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastHandledSkipGates string `json:"lastHandledSkipGates,omitempty"`

	// overrides records the latest overrides that took effect (a full
	// promote, a skip of the gates), newest last, with who asked and why. It
	// keeps the last 10, across revisions. Overrides that were ignored are
	// recorded only as Warning events.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	Overrides []OverrideRecord `json:"overrides,omitempty"`

	// conditions follow kstatus: Ready is True when the rollout is settled
	// (Succeeded or Idle); Reconciling is present while it moves; Stalled is
	// present when it cannot go on without a change from the user. See the
	// ConditionType constants for the others.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// HeaderRouteStatus names the HTTPRoutes a header-routed step uses.
type HeaderRouteStatus struct {
	// routes are the names of the HTTPRoutes the rollout owns for this
	// step, one per route in spec.routes, in the rollout's namespace.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	Routes []string `json:"routes,omitempty"`

	// match is the step's match that those routes add to every managed
	// rule's matches.
	//
	// +required
	Match StepMatch `json:"match"`
}

// RollbackStatus says why the canary was taken out of traffic.
type RollbackStatus struct {
	// reason is a CamelCase cause: GateFailed, AlertFiring, Aborted,
	// ProgressDeadlineExceeded or CanaryUnavailable.
	//
	// +required
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason"`

	// message explains the rollback, e.g. the gate, its value and threshold, or
	// the alert and its labels.
	//
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`

	// fromWeight is the canary weight before the rollback.
	//
	// +optional
	FromWeight int32 `json:"fromWeight"`

	// at is when the rollback happened.
	//
	// +required
	At metav1.Time `json:"at"`
}

// OverrideKind is a manual override of the schedule or the gates.
//
// +kubebuilder:validation:Enum=PromoteFull;SkipGates
type OverrideKind string

const (
	// OverridePromoteFull moved the canary to the last step (100%) at once.
	OverridePromoteFull OverrideKind = "PromoteFull"
	// OverrideSkipGates advanced the current step now, past its pause and
	// the verdicts of its gates.
	OverrideSkipGates OverrideKind = "SkipGates"
)

// OverrideRecord is one override that took effect.
type OverrideRecord struct {
	// at is when the controller acted on it.
	// +required
	At metav1.Time `json:"at"`

	// kind of override: PromoteFull or SkipGates.
	// +required
	Kind OverrideKind `json:"kind"`

	// token is the value of the annotation that asked for it.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Token string `json:"token,omitempty"`

	// revision is the stable and canary pair the override acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Revision string `json:"revision,omitempty"`

	// step is the step it acted at, e.g. "2/5".
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Step string `json:"step,omitempty"`

	// fromWeight is the canary weight before the override.
	// +optional
	FromWeight int32 `json:"fromWeight"`

	// toWeight is the canary weight the override set (the next step's, or
	// 100); for a skip of the last step, 100, and the rollout Succeeded.
	// +optional
	ToWeight int32 `json:"toWeight"`

	// reason is the reason given with the request
	// (rollouts.modelrollout.io/promote-reason).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Reason string `json:"reason,omitempty"`

	// requestedBy is who asked, as the client that wrote the request said
	// (rollouts.modelrollout.io/requested-by). The controller does not
	// verify it: the API server's audit log has the authenticated identity.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	RequestedBy string `json:"requestedBy,omitempty"`

	// message says what the override passed over, e.g. the gates that held
	// the step and the pause left.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// StepRecord is one step's timeline entry.
type StepRecord struct {
	// weight of the step.
	// +required
	Weight int32 `json:"weight"`
	// startedAt is when the routes came to carry the step's weight, to the
	// microsecond.
	// +required
	StartedAt MicroTime `json:"startedAt"`
	// endedAt is when the step gave way to the next one, to success or to a
	// rollback, to the microsecond.
	// +optional
	EndedAt *MicroTime `json:"endedAt,omitempty"`
}

// Phase is the rollout's place in its lifecycle.
//
// +kubebuilder:validation:Enum=Idle;Waiting;Progressing;Paused;Succeeded;RolledBack
type Phase string

const (
	// PhaseIdle: spec.canary is absent; the rollout manages nothing and the
	// routes are left as they are.
	PhaseIdle Phase = "Idle"
	// PhaseWaiting: a precondition is unmet (a route is missing or does not
	// reference the stable backend, another rollout manages the rule, the
	// canary has no ready endpoints, a gate is invalid), or the rollout is
	// returning a removed canary's traffic to stable before it goes Idle. No
	// step advances while waiting; a canary that already has traffic keeps
	// its share until the progress deadline or the unavailability grace.
	PhaseWaiting Phase = "Waiting"
	// PhaseProgressing: the canary receives its step's share and the schedule
	// advances as pauses elapse and gates pass.
	PhaseProgressing Phase = "Progressing"
	// PhasePaused: the rollout holds at its current step, because spec.paused
	// or the paused annotation is set, or because the step has no pause and
	// waits for a manual promote.
	PhasePaused Phase = "Paused"
	// PhaseSucceeded: the canary has all traffic (weight 100) and the last
	// step has baked. Terminal until the canary changes.
	PhaseSucceeded Phase = "Succeeded"
	// PhaseRolledBack: the canary was taken out of traffic (weight 0) after a
	// failed gate, a firing alert, an abort or a missed deadline. Terminal
	// until the canary changes or the user retries.
	PhaseRolledBack Phase = "RolledBack"
)

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mro,categories=modelrollouts
// +kubebuilder:printcolumn:name="Route",type=string,JSONPath=`.spec.routes[0].name`
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.spec.canary.name`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.canaryWeight`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Stable",type=string,JSONPath=`.spec.stable.name`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1

// ModelRollout moves traffic from a stable model backend to a canary through
// a schedule of HTTPRoute weights, gated by Prometheus queries at every step.
type ModelRollout struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired rollout.
	// +required
	Spec ModelRolloutSpec `json:"spec"`
	// status is the rollout's observed state, written by the controller.
	// +optional
	Status ModelRolloutStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ModelRolloutList is a list of ModelRollouts.
type ModelRolloutList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelRollout `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelRollout{}, &ModelRolloutList{})
}

// CapacityStatus is a wait for canary capacity.
type CapacityStatus struct {
	// since is when the wait began.
	//
	// +required
	Since metav1.Time `json:"since"`

	// weight is the canary weight waited for.
	//
	// +required
	Weight int32 `json:"weight"`

	// readyStable and readyCanary are the ready endpoints last counted.
	//
	// +optional
	ReadyStable int32 `json:"readyStable"`
	// readyCanary is the ready canary endpoints last counted.
	//
	// +optional
	ReadyCanary int32 `json:"readyCanary"`

	// required is how many ready canary endpoints the weight needs.
	//
	// +required
	Required int32 `json:"required"`
}
