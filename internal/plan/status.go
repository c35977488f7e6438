package plan

import (
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Bounds of the status strings, from the CRD (maxLength). A status with a
// longer string is rejected whole by the API server, rollbacks included, so
// every string is cut to its bound before a status is written.
const (
	MaxMessage          = 1024
	maxRevision         = 1024
	maxStep             = 16
	maxRollbackReason   = 64
	MaxToken            = 256
	MaxConditionMessage = 32768
	maxGateName         = 63
	maxGateValue        = 64
	maxGateThreshold    = 128
	maxGateMessage      = 512
	maxMeasureMessage   = 256
	maxOverrideReason   = 512
	maxRequestedBy      = 256
	maxWorkloadWhy      = 256
	maxWebhookName      = 63
	maxWebhookMessage   = 256
	maxGateTemplate     = 300
	maxGateTenancy      = 128
	maxGateQuery        = 8192
)

// clampStatus cuts every string of the status to its CRD bound, without
// splitting a UTF-8 sequence. patchStatus calls it before every write, so
// no name in spec, however long, can make the API server refuse a status
// (a rollback included). Strings copied from spec fields with the same
// bound need no cut; they are cut anyway where a message is built around
// them. TestClampStatusCoversTheCRD checks every bounded string.
func ClampStatus(st *rolloutsv1.ModelRolloutStatus) {
	st.Message = Truncate(st.Message, MaxMessage)
	st.Revision = Truncate(st.Revision, maxRevision)
	st.Step = Truncate(st.Step, maxStep)
	st.LastHandledPromote = Truncate(st.LastHandledPromote, MaxToken)
	st.LastHandledAbort = Truncate(st.LastHandledAbort, MaxToken)
	st.LastHandledRetry = Truncate(st.LastHandledRetry, MaxToken)
	st.LastHandledPromoteFull = Truncate(st.LastHandledPromoteFull, MaxToken)
	st.LastHandledSkipGates = Truncate(st.LastHandledSkipGates, MaxToken)
	for i := range st.Overrides {
		o := &st.Overrides[i]
		o.Token = Truncate(o.Token, MaxToken)
		o.Revision = Truncate(o.Revision, maxRevision)
		o.Step = Truncate(o.Step, maxStep)
		o.Reason = Truncate(o.Reason, maxOverrideReason)
		o.RequestedBy = Truncate(o.RequestedBy, maxRequestedBy)
		o.Message = Truncate(o.Message, MaxMessage)
	}
	if rb := st.Rollback; rb != nil {
		rb.Reason = Truncate(rb.Reason, maxRollbackReason)
		rb.Message = Truncate(rb.Message, MaxMessage)
	}
	for i := range st.Conditions {
		st.Conditions[i].Message = Truncate(st.Conditions[i].Message, MaxConditionMessage)
	}
	for i := range st.Gates {
		g := &st.Gates[i]
		g.Name = Truncate(g.Name, maxGateName)
		g.Value = Truncate(g.Value, maxGateValue)
		g.Threshold = Truncate(g.Threshold, maxGateThreshold)
		g.Message = Truncate(g.Message, maxGateMessage)
		g.StableValue = Truncate(g.StableValue, maxGateValue)
		g.Template = Truncate(g.Template, maxGateTemplate)
		g.Tenancy = Truncate(g.Tenancy, maxGateTenancy)
		g.Query = Truncate(g.Query, maxGateQuery)
		for j := range g.History {
			g.History[j].Value = Truncate(g.History[j].Value, maxGateValue)
			g.History[j].Message = Truncate(g.History[j].Message, maxMeasureMessage)
		}
	}
	for i := range st.Workloads {
		st.Workloads[i].Why = Truncate(st.Workloads[i].Why, maxWorkloadWhy)
	}
	for i := range st.Webhooks {
		st.Webhooks[i].Name = Truncate(st.Webhooks[i].Name, maxWebhookName)
		st.Webhooks[i].Message = Truncate(st.Webhooks[i].Message, maxWebhookMessage)
	}
}
