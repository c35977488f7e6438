// Package alerts is the operator's Alertmanager webhook receiver. It takes a
// canary out of traffic as soon as Alertmanager reports a firing alert for it:
// the receiver writes the abort annotation on the ModelRollout, and the
// controller, which watches annotation changes, rolls the rollout back with
// reason AlertFiring on its next reconcile. On the leader the receiver also
// hands the abort to the controller in memory first (Options.Direct), and
// patches the annotation once the controller has sent the route patches,
// so that the routes go back to stable in about one API round trip.
//
// # Endpoint
//
// The receiver serves POST /alerts (the constant Path) on its own address,
// optionally over TLS, and only that path; everything else is 404. Requests
// must carry "Authorization: Bearer <token>". The token is a static string or
// the trimmed content of a file that is re-read whenever it changes, so a
// rotated Kubernetes Secret volume takes effect without a restart. The
// receiver never runs unauthenticated: an empty static token is a
// configuration error, and while the token file is missing or empty (a Secret
// not created yet) every request is refused with 503.
//
// Responses: 405 for a method other than POST, 401 for a missing or wrong
// token, 413 for a body over MaxBodyBytes (1 MiB by default), 400 for a body
// that is not a JSON Alertmanager webhook payload of version "4", 503 when the
// token file cannot be read, 500 when the rollouts could not be listed or an
// annotation patch failed (Alertmanager retries on 5xx; every write is
// idempotent, so a retry is safe), and 200 with a JSON summary otherwise. The
// 200 is sent only after the patches were accepted by the API server.
//
// The Helm chart and config/default run it on port 8443 of the manager,
// behind the Service port named "alerts", in plain HTTP unless the chart's
// alertReceiver.tls.enabled is set, with the token read from key "token" of
// the Secret modelrollout-alert-receiver-token, mounted at
// /etc/modelrollout/alert-receiver/token. For a Helm release "modelrollout"
// in namespace modelrollout-system (the chart's NOTES.txt prints the snippet
// for any release), with that Secret copied into Alertmanager's namespace and
// mounted at /etc/alertmanager/secrets/<name>/ (prometheus-operator's
// Alertmanager spec.secrets):
//
//	receivers:
//	- name: modelrollout
//	  webhook_configs:
//	  - url: http://modelrollout.modelrollout-system.svc:8443/alerts
//	    send_resolved: false
//	    http_config:
//	      authorization:
//	        credentials_file: /etc/alertmanager/secrets/modelrollout-alert-receiver-token/token
//
// With config/default the Service is modelrollout-controller-manager:
// http://modelrollout-controller-manager.modelrollout-system.svc:8443/alerts.
//
// # Matching
//
// Only alerts whose own status is "firing" act. Resolved alerts, and firing
// alerts that match no rollout, are counted and answered with 200; nothing is
// written. A firing alert matches a ModelRollout when either holds:
//
//  1. Direct: the alert has the labels modelrollout=<name> and
//     namespace=<namespace> of the rollout. Both labels are needed; a
//     modelrollout label without a namespace label names nothing.
//  2. Selector: the rollout has spec.rollbackOnAlerts.matchLabels and every one
//     of those labels is present on the alert with an equal value. Labels of
//     the alert beyond the selector do not matter. An empty selector matches
//     nothing. A selector is not confined to its rollout's namespace: it
//     matches alerts from anywhere, exactly as written.
//
// Rollouts are listed once per request (from the manager's cache, without
// deep copies) and indexed, so a request costs one pass over the rollouts plus
// a few map look-ups per alert label, whatever the number of rollouts.
//
// # Phase policy
//
// A matched rollout is aborted only while its canary is being rolled out:
// in phase Waiting, Progressing or Paused. A Succeeded rollout is never
// touched: its canary has become the production backend, and silently
// reverting a finished rollout because of an alert would move all traffic to
// a version the owner has already replaced; that decision is left to a human
// (or to a new rollout). A RolledBack rollout has nothing left to take out of
// traffic, and an Idle rollout, or one whose status the controller has not
// written yet, has no canary in traffic; these are skipped too. Phases are
// read from the cache; if a rollout's phase changes between that read and the
// controller's reconcile, the controller's own rule (it acts on an abort only
// in Waiting, Progressing or Paused) decides. An alert whose startsAt is
// before the rollout's status.startedAt is skipped: it began before this
// revision's canary had traffic, so it is about an earlier canary (the one
// just rolled back, in Alertmanager's next notification) or the stable.
//
// # What is written
//
// For each matched rollout, once per request, the receiver merge-patches two
// annotations and nothing else, so other annotations are kept:
//
//	rollouts.modelrollout.io/abort: alert-<16 hex digits>
//	rollouts.modelrollout.io/abort-reason: alert HighErrorRate{model="gpt-4",severity="critical"} firing
//
// The token is a hash of the alert's fingerprint (or, when the fingerprint is
// empty, of its sorted labels) and its startsAt. Alertmanager repeats the
// notification of a firing alert at every repeat_interval, and several
// Alertmanager replicas and several operator replicas may each deliver it; all
// of these produce the same token, and the receiver does not patch a rollout
// whose abort annotation or status.lastHandledAbort already holds it. A new
// firing of the same alert (a new startsAt) yields a new token. The reason is
// the alertname followed by the other labels sorted by name, values quoted,
// cut to at most 900 bytes. When several alerts in one notification match the
// same rollout, the first in the payload is written and the others are only
// logged.
//
// The merge patch carries the rollout's UID as a precondition, so a rollout
// deleted and re-created under the same name since the list is not patched
// by mistake; the request fails with 500 and Alertmanager's retry evaluates
// the new object.
//
// # Running it
//
// Receiver is a manager.Runnable that does not need leader election: every
// replica of the operator serves alerts, since the write goes through the API
// server and the leader's controller acts on it wherever it was received.
package alerts
