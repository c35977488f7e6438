package argocdupstream

import (
	_ "github.com/argoproj/argo-cd/v3/util/argo/diff"
	_ "github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	_ "github.com/argoproj/argo-cd/v3/util/lua"
	_ "github.com/argoproj/argo-cd/v3/util/settings"
	_ "github.com/argoproj/gitops-engine/pkg/health"
	_ "github.com/argoproj/gitops-engine/pkg/utils/kube"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
)
