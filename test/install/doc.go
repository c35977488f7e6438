// Package install tests how the operator is installed: the Helm chart in
// charts/modelrollout, the kustomize bases in config/, and the Argo CD
// customizations in config/argocd. The helm CLI is built from the Go module
// proxy by test/scripts/helm.sh; the server-side dry runs use envtest
// (KUBEBUILDER_ASSETS) and the kubectl on PATH.
//
// Generated copies (the chart's CRDs and ClusterRole rules, the argocd-cm
// snippet) are checked here; refresh them with
//
//	UPDATE_GENERATED=1 go test ./test/install -run InSync
package install
