// Package argocdupstream runs this project's Argo CD integration through
// Argo CD's own code, github.com/argoproj/argo-cd/v3 v3.3.9, against live
// objects on a real API server, with the operator (cmd/manager, built from
// this repository) running as a process:
//
//   - config/argocd/argocd-cm.yaml, installed as config/argocd/README.md says
//     (kubectl patch of argocd-cm), read back by Argo CD's settings manager;
//     the health check and every action run in Argo CD's Lua VM
//     (util/lua), and each action's result is patched onto the live
//     ModelRollout the way the Argo CD API server does it;
//   - the ignoreDifferences recipe of config/argocd/README.md, compared by
//     Argo CD's diff (util/argo/diff, util/argo/normalizers and
//     gitops-engine's pkg/diff) against live HTTPRoutes and Deployments the
//     operator changes, and synced with gitops-engine's kubectl apply; the
//     RespectIgnoreDifferences sync target is computed by a copy of Argo
//     CD's normalizeTargetResources (unexported in its controller package),
//     which a test keeps identical to the pinned source.
//
// It is a Go module of its own so that Argo CD's k8s.io pins (v0.34) never
// touch the operator's module (v0.37); it does not import the operator's
// packages and drives the cluster through the API server and kubectl.
package argocdupstream
