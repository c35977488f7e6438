package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow kstatus (Ready is
// normal-true; Reconciling and Stalled are present only while true), so
// `kubectl wait --for=condition=Ready`, Flux and cli-utils read the right state.
const (
	// ConditionReady is True when the rollout is settled: Succeeded, or Idle
	// with nothing to do. It is False while the rollout moves, waits or after
	// a rollback, with the phase as reason.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the rollout moves toward its goal:
	// Waiting, Progressing or Paused.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the rollout cannot go on without a change
	// from the user: it was rolled back, a gate is invalid, or the progress
	// deadline passed.
	ConditionStalled = "Stalled"
	// ConditionRoutesResolved is True when every route exists and every managed
	// rule references the stable backend.
	ConditionRoutesResolved = "RoutesResolved"
	// ConditionCanaryAvailable is True when the canary backend exists and has
	// ready endpoints.
	ConditionCanaryAvailable = "CanaryAvailable"
	// ConditionRoutesApplied is True when every managed rule that resolves
	// carries the weights the rollout decided; False while a write is pending
	// (Pending), when the API server rejects the patch (PatchRejected), when
	// another field manager keeps changing the weights back (Contended), or
	// when another rollout manages a rule (RouteConflict).
	ConditionRoutesApplied = "RoutesApplied"
	// ConditionHeaderRouted is present while the current step has a match:
	// True when the HTTPRoutes the rollout owns for it (status.headerRoute)
	// are in place; False while they are being written (Pending), when a
	// route of that name exists that the rollout does not own
	// (HeaderRouteConflict), when the API server rejects one
	// (PatchRejected), or when no managed match can take the step's match
	// (NoMatchForHeaderRoute).
	ConditionHeaderRouted = "HeaderRouted"
	// ConditionGatesPassing is True when the latest evaluation of every gate
	// passed; False with the failing or holding gate named otherwise.
	ConditionGatesPassing = "GatesPassing"
	// ConditionWebhooksPassing is False while a PreRollout or
	// ConfirmPromotion webhook blocks the rollout, or after a PreRollout
	// webhook failed; True once every blocking webhook due so far passed.
	// Absent for rollouts without blocking webhooks.
	ConditionWebhooksPassing = "WebhooksPassing"
	// ConditionWorkloadHandoff is present while a workload handoff
	// (status.workloads) cannot be done: False with reason
	// WorkloadHandoffForbidden (the operator lacks the opt-in RBAC),
	// WorkloadNotFound or WorkloadHandoffFailed. The rollout goes on
	// meanwhile and tries again.
	ConditionWorkloadHandoff = "WorkloadHandoff"
)

// Condition reasons.
const (
	// ReasonSucceeded: the canary holds all traffic.
	ReasonSucceeded = "Succeeded"
	// ReasonIdle: no canary is declared.
	ReasonIdle = "Idle"
	// ReasonProgressing: the rollout is moving through its steps.
	ReasonProgressing = "Progressing"
	// ReasonPaused: the rollout holds at a step by request or for a promote.
	ReasonPaused = "Paused"
	// ReasonWaiting: a precondition is unmet.
	ReasonWaiting = "Waiting"
	// ReasonRolledBack: the canary was taken out of traffic.
	ReasonRolledBack = "RolledBack"

	// ReasonRouteNotFound: a route in spec.routes does not exist.
	ReasonRouteNotFound = "RouteNotFound"
	// ReasonStableNotReferenced: a route has no managed rule referencing the
	// stable backend.
	ReasonStableNotReferenced = "StableNotReferenced"
	// ReasonRuleNotFound: a rule named in spec.routes[].rules is absent.
	ReasonRuleNotFound = "RuleNotFound"
	// ReasonRouteConflict: another rollout manages a rule this rollout
	// would manage; the message names it. Nothing is written until the rule
	// is free.
	ReasonRouteConflict = "RouteConflict"
	// ReasonRouteOwnedByController: a route in spec.routes has a controller
	// ownerReference to something other than this rollout (another
	// controller, such as an AIGatewayRoute, generates it and would
	// overwrite any weight written to it); the message names the owner's
	// kind and name and what to target instead. Nothing is written to any
	// route, and a running step stops its clock, until the ownerReference
	// is removed; a deletion leaves such a route alone.
	ReasonRouteOwnedByController = "RouteOwnedByController"
	// ReasonApplied: every managed rule carries the decided weights.
	ReasonApplied = "Applied"
	// ReasonPending: the decided weights are being written.
	ReasonPending = "Pending"
	// ReasonPatchRejected: the API server (or an admission policy or
	// webhook) rejected the route patch; the message is the API server's.
	ReasonPatchRejected = "PatchRejected"
	// ReasonContended: another field manager keeps changing the managed
	// weights back; the controller corrects them with exponential backoff.
	ReasonContended = "Contended"
	// ReasonCanaryHoldsAllTraffic: the canary of the finished rollout holds
	// 100% of traffic and spec.stable still names the old stable, so a new
	// or removed canary moves nothing until spec.stable is updated.
	ReasonCanaryHoldsAllTraffic = "CanaryHoldsAllTraffic"
	// ReasonWorkloadHandoffForbidden: the operator may not read or scale a
	// workload of status.workloads (apply config/rbac/workload-handoff or
	// set the chart value workloadHandoff.enabled).
	ReasonWorkloadHandoffForbidden = "WorkloadHandoffForbidden"
	// ReasonWorkloadNotFound: a workload of status.workloads does not exist,
	// or its kind is not served.
	ReasonWorkloadNotFound = "WorkloadNotFound"
	// ReasonWorkloadHandoffFailed: reading or scaling a workload failed
	// otherwise.
	ReasonWorkloadHandoffFailed = "WorkloadHandoffFailed"
	// ReasonRetiring: a removed canary's traffic is being returned to stable.
	ReasonRetiring = "Retiring"
	// ReasonHeaderRouteConflict: the name of a header route is taken by an
	// HTTPRoute the rollout does not own; it is left alone.
	ReasonHeaderRouteConflict = "HeaderRouteConflict"
	// ReasonNoMatchForHeaderRoute: every match of a managed rule already
	// tests a header or query parameter of the step's match, so none can
	// take it; those requests stay on the weights.
	ReasonNoMatchForHeaderRoute = "NoMatchForHeaderRoute"
	// ReasonResolved: all routes and rules resolved.
	ReasonResolved = "Resolved"
	// ReasonBackendNotFound: the canary Service or InferencePool does not exist.
	ReasonBackendNotFound = "BackendNotFound"
	// ReasonBackendNotAccepted: a gateway reports in the canary
	// InferencePool's status that it does not accept the pool or cannot
	// resolve its references (Accepted or ResolvedRefs False).
	ReasonBackendNotAccepted = "BackendNotAccepted"
	// ReasonNoReadyEndpoints: the canary Service has no ready endpoints.
	ReasonNoReadyEndpoints = "NoReadyEndpoints"
	// ReasonAvailable: the canary has ready endpoints.
	ReasonAvailable = "Available"

	// ReasonGatesPassed: every gate's latest evaluation passed.
	ReasonGatesPassed = "GatesPassed"
	// ReasonGateFailed: a gate's value is outside its range.
	ReasonGateFailed = "GateFailed"
	// ReasonGateNoData: a gate had no data and holds the step.
	ReasonGateNoData = "GateNoData"
	// ReasonPrometheusError: Prometheus could not be queried.
	ReasonPrometheusError = "PrometheusError"
	// ReasonGateError: a gate that does not query Prometheus (a web gate)
	// could not call its endpoint, or could not read a number from the
	// answer.
	ReasonGateError = "GateError"
	// ReasonInvalidQuery: a gate's query does not parse or render.
	ReasonInvalidQuery = "InvalidQuery"
	// ReasonInvalidConfig: a referenced Secret or other setting is unusable.
	ReasonInvalidConfig = "InvalidConfig"
	// ReasonGateTemplateNotFound: a gate's templateRef names a GateTemplate
	// or ClusterGateTemplate that does not exist (or whose CRD is not
	// installed). The rollout waits and goes on once the template is
	// created.
	ReasonGateTemplateNotFound = "GateTemplateNotFound"
	// ReasonInvalidGateArgs: a gate passes an argument its template does
	// not declare, or leaves out one the template requires (declared
	// without a default), or the gate and its template together set no
	// threshold.
	ReasonInvalidGateArgs = "InvalidGateArgs"
	// ReasonAwaitingEvaluation: gates have not been evaluated in this step yet.
	ReasonAwaitingEvaluation = "AwaitingEvaluation"

	// ReasonWebhookPending: a PreRollout or ConfirmPromotion webhook has
	// not answered 2xx yet.
	ReasonWebhookPending = "WebhookPending"
	// ReasonWebhookFailed: a PreRollout webhook failed failureLimit times in
	// a row.
	ReasonWebhookFailed = "WebhookFailed"
	// ReasonWebhooksPassed: every blocking webhook due so far answered 2xx.
	ReasonWebhooksPassed = "WebhooksPassed"

	// ReasonWaitingForCapacity: the canary has fewer ready endpoints than
	// the next step's weight needs (spec.capacityFactor).
	ReasonWaitingForCapacity = "WaitingForCapacity"

	// ReasonAlertFiring: an Alertmanager alert matched the rollout.
	ReasonAlertFiring = "AlertFiring"
	// ReasonAborted: a user asked for a rollback.
	ReasonAborted = "Aborted"
	// ReasonProgressDeadlineExceeded: preconditions stayed unmet past
	// spec.progressDeadline.
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	// ReasonCanaryUnavailable: the canary lost its backend or all its ready
	// endpoints while it had traffic, for longer than
	// spec.canaryUnavailableGrace.
	ReasonCanaryUnavailable = "CanaryUnavailable"
	// ReasonInconclusive: gates held without a verdict past inconclusiveLimit.
	ReasonInconclusive = "InconclusiveAnalysis"
)

// Annotations through which people and tools steer a rollout without writing
// its spec (which Git, through Argo CD, owns). Each of promote, abort and retry
// takes a token, such as a timestamp; the controller acts once per new token
// and records the token it handled in status.
const (
	// AnnotationPromote ends the current step's pause now. Gates must still pass.
	AnnotationPromote = "rollouts.modelrollout.io/promote"
	// AnnotationAbort rolls the canary back now.
	AnnotationAbort = "rollouts.modelrollout.io/abort"
	// AnnotationAbortReason is the reason recorded with an abort.
	AnnotationAbortReason = "rollouts.modelrollout.io/abort-reason"
	// AnnotationAbortRevision is the revision (status.revision) an abort was
	// raised for. The Alertmanager receiver writes it: an alert about one
	// revision's canary that lands once another revision runs is ignored
	// (Event AbortIgnored), never rolls the new one back. Without it, an
	// abort acts on whatever revision runs.
	AnnotationAbortRevision = "rollouts.modelrollout.io/abort-revision"
	// AnnotationRetry restarts a rolled-back rollout at the first step.
	AnnotationRetry = "rollouts.modelrollout.io/retry"
	// AnnotationPaused, set to "true", holds the rollout like spec.paused.
	AnnotationPaused = "rollouts.modelrollout.io/paused"

	// AnnotationPromoteFull moves the canary to the last step (100%) now,
	// past the current step's pause and gates. A token.
	AnnotationPromoteFull = "rollouts.modelrollout.io/promote-full"
	// AnnotationSkipGates advances the current step now, past its pause and
	// the verdicts of its gates (holding, not yet evaluated, or failing
	// below failureLimit), once. A token.
	AnnotationSkipGates = "rollouts.modelrollout.io/skip-gates"
	// AnnotationPromoteReason is the reason recorded with a promote-full or
	// skip-gates request. Write it in the same change as the token.
	AnnotationPromoteReason = "rollouts.modelrollout.io/promote-reason"
	// AnnotationRequestedBy names who asked for a promote-full or
	// skip-gates request, as the client says (kubectl modelrollout fills it
	// from a SelfSubjectReview). Write it in the same change as the token.
	AnnotationRequestedBy = "rollouts.modelrollout.io/requested-by"
)
