package controllers

import (
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Bounds of the status strings, from the CRD (maxLength). A status with a
// longer string is rejected whole by the API server, rollbacks included, so
// every string is cut to its bound before a status is written.
const (
	maxMessage          = 1024
	maxRevision         = 1024
	maxStep             = 16
	maxRollbackReason   = 64
	maxToken            = 256
	maxConditionMessage = 32768
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
func clampStatus(st *rolloutsv1.ModelRolloutStatus) {
	st.Message = truncate(st.Message, maxMessage)
	st.Revision = truncate(st.Revision, maxRevision)
	st.Step = truncate(st.Step, maxStep)
	st.LastHandledPromote = truncate(st.LastHandledPromote, maxToken)
	st.LastHandledAbort = truncate(st.LastHandledAbort, maxToken)
	st.LastHandledRetry = truncate(st.LastHandledRetry, maxToken)
	st.LastHandledPromoteFull = truncate(st.LastHandledPromoteFull, maxToken)
	st.LastHandledSkipGates = truncate(st.LastHandledSkipGates, maxToken)
	for i := range st.Overrides {
		o := &st.Overrides[i]
		o.Token = truncate(o.Token, maxToken)
		o.Revision = truncate(o.Revision, maxRevision)
		o.Step = truncate(o.Step, maxStep)
		o.Reason = truncate(o.Reason, maxOverrideReason)
		o.RequestedBy = truncate(o.RequestedBy, maxRequestedBy)
		o.Message = truncate(o.Message, maxMessage)
	}
	if rb := st.Rollback; rb != nil {
		rb.Reason = truncate(rb.Reason, maxRollbackReason)
		rb.Message = truncate(rb.Message, maxMessage)
	}
	for i := range st.Conditions {
		st.Conditions[i].Message = truncate(st.Conditions[i].Message, maxConditionMessage)
	}
	for i := range st.Gates {
		g := &st.Gates[i]
		g.Name = truncate(g.Name, maxGateName)
		g.Value = truncate(g.Value, maxGateValue)
		g.Threshold = truncate(g.Threshold, maxGateThreshold)
		g.Message = truncate(g.Message, maxGateMessage)
		g.StableValue = truncate(g.StableValue, maxGateValue)
		g.Template = truncate(g.Template, maxGateTemplate)
		g.Tenancy = truncate(g.Tenancy, maxGateTenancy)
		g.Query = truncate(g.Query, maxGateQuery)
		for j := range g.History {
			g.History[j].Value = truncate(g.History[j].Value, maxGateValue)
			g.History[j].Message = truncate(g.History[j].Message, maxMeasureMessage)
		}
	}
	for i := range st.Workloads {
		st.Workloads[i].Why = truncate(st.Workloads[i].Why, maxWorkloadWhy)
	}
	for i := range st.Webhooks {
		st.Webhooks[i].Name = truncate(st.Webhooks[i].Name, maxWebhookName)
		st.Webhooks[i].Message = truncate(st.Webhooks[i].Message, maxWebhookMessage)
	}
}
