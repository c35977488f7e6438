# ModelRollout: progressive delivery of LLM inference services on Gateway API.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

K8S_VERSION ?= v1.37.2
CONTROLLER_GEN ?= go tool controller-gen
CRD_REF_DOCS ?= go tool crd-ref-docs
# One test binary at a time: the suites start their own API servers,
# Prometheus and load, and must not starve each other on a 2-core machine.
GOTEST_FLAGS ?= -p 1
# The test API server, built from the Go module proxy and cached in bin/.
KUBEBUILDER_ASSETS ?= $(CURDIR)/bin/control-plane/$(K8S_VERSION)

export KUBEBUILDER_ASSETS

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:allowDangerousTypes=true paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/*.yaml charts/modelrollout/crds/
	cp config/rbac/role.yaml charts/modelrollout/files/manager-role.yaml
	cp config/rbac/workload-handoff/role.yaml charts/modelrollout/files/workload-handoff-role.yaml

.PHONY: generate
generate: ## Generate deepcopy code, the API reference (docs/reference/api.md) and the Argo CD action scripts (from api/v1alpha1's table of actions).
	$(CONTROLLER_GEN) object paths="./api/..."
	$(CRD_REF_DOCS) --log-level=ERROR --source-path=./api --config=docs/reference/crd-ref-docs.yaml --renderer=markdown --output-path=docs/reference/api.md
	go run ./hack/argocd-lua
	UPDATE_GENERATED=1 go test ./test/install -run '^TestArgoCDConfigMapInSync$$' -count=1 >/dev/null

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

# Extra flags for golangci-lint run, e.g. GOLANGCI_LINT_FLAGS=--fix.
GOLANGCI_LINT_FLAGS ?=

.PHONY: lint
lint: ## Check formatting and run golangci-lint (.golangci.yml: go vet, staticcheck, ..., kube-api-linter on api/).
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	@golangci_lint="$$(bash test/scripts/golangci-lint.sh)"; "$$golangci_lint" run $(GOLANGCI_LINT_FLAGS) ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files drift from the sources, code is unformatted, or a linter complains.
	@$(MAKE) --no-print-directory lint
	@if [ -n "$$(git status --porcelain -- config api charts docs/reference/api.md)" ]; then echo "generated files are out of date; run 'make manifests generate' and commit:"; git status --porcelain -- config api charts docs/reference/api.md; git --no-pager diff -- config api charts docs/reference/api.md | head -50; exit 1; fi

.PHONY: control-plane
control-plane: ## Build kube-apiserver and etcd from the Go module proxy (cached in bin/).
	@K8S_VERSION=$(K8S_VERSION) bash test/scripts/control-plane.sh >/dev/null

.PHONY: workload-plane
workload-plane: control-plane ## Build kube-controller-manager and kwok for the workloads suite (cached in bin/).
	@K8S_VERSION=$(K8S_VERSION) bash test/scripts/workload-plane.sh >/dev/null

.PHONY: traefik
traefik: ## Build Traefik from the Go module proxy for the real-gateway suite and demo (cached in bin/).
	@bash test/scripts/traefik.sh >/dev/null

.PHONY: test-deps
test-deps: control-plane ## Install everything the tests need (control plane, Prometheus, Alertmanager).
	@bash test/scripts/install-deps.sh

.PHONY: test
test: test-deps workload-plane traefik verify ## Run all tests: unit, integration on a real API server and Prometheus, and e2e.
	go test -count=1 $(GOTEST_FLAGS) -timeout 45m ./...
	cd test/argocd-upstream && go test -count=1 $(GOTEST_FLAGS) -timeout 20m ./...

.PHONY: test-release
test-release: test-deps ## Run the release tests for every released platform (make test builds only this machine's).
	RELEASE_TEST_PLATFORMS=all go test -count=1 -timeout 45m ./test/release/

.PHONY: test-e2e
test-e2e: test-deps ## Run only the end-to-end suite.
	go test $(GOTEST_FLAGS) -timeout 30m ./test/e2e/...

.PHONY: bench
bench: test-deps ## Run the benchmarks and print their ratios.
	go test -run '^$$' -bench . -benchmem -timeout 30m $$(go list ./... | grep -v /test/bench)
	go test -run '^$$' -bench . -benchtime=100x -timeout 30m ./test/bench/

# The scale benchmark's flags (go run ./test/cmd/bench-scale -h lists them);
# the defaults are issue 10's goals: 1,000 rollouts, 5 steps of 30 s, then
# 10,000 resident rollouts and a leader failover.
BENCH_SCALE_FLAGS ?= -resident=10000

.PHONY: bench-scale
bench-scale: ## Run the scale benchmark (real API server, cmd/manager as a process) and print its table against issue 10's goals.
	go run ./test/cmd/bench-scale $(BENCH_SCALE_FLAGS)

##@ Build

.PHONY: build
build: ## Build the operator and the kubectl plugin into bin/.
	go build -o bin/manager ./cmd/manager
	go build -o bin/kubectl-modelrollout ./cmd/kubectl-modelrollout

# Release version (x.y.z) and image; both default to the chart's appVersion and
# image.repository (charts/modelrollout), which config/manager also names.
VERSION ?=
IMG ?=
# Base image pulled from a registry instead of the base built from scratch,
# e.g. gcr.io/distroless/static:nonroot.
BASE_IMAGE ?=
# org.opencontainers.image.licenses: an SPDX expression.
LICENSES ?= NOASSERTION
RELEASE_FLAGS = $(if $(VERSION),--version=$(VERSION)) $(if $(IMG),--image=$(IMG)) $(if $(BASE_IMAGE),--base=$(BASE_IMAGE)) --licenses='$(LICENSES)'

.PHONY: image
image: ## Build the manager's image (linux/amd64, linux/arm64) without Docker: OCI layout and docker load tarballs in bin/image/.
	go run ./cmd/release image --out bin/image $(RELEASE_FLAGS)

.PHONY: image-push
image-push: ## Build the image and push it to IMG (credentials from ~/.docker/config.json).
	go run ./cmd/release image --out bin/image --push $(RELEASE_FLAGS)

.PHONY: docker-build
docker-build: ## Build the image with Docker from the Dockerfile (distroless base).
	docker build --build-arg VERSION="$$(git describe --tags --always --dirty)" -t "$(or $(IMG),$$(go run ./cmd/release image-ref $(if $(VERSION),--version=$(VERSION))))" .

.PHONY: release
release: ## Write the release bundle for VERSION=x.y.z into dist/ (install.yaml, chart, plugin archives, checksums, krew manifest).
	go run ./cmd/release bundle --out dist $(if $(VERSION),--version=$(VERSION)) --helm "$$(bash test/scripts/helm.sh)"

.PHONY: run
run: manifests generate ## Run the operator against the cluster in your kubeconfig.
	go run ./cmd/manager

.PHONY: install
install: manifests ## Install the CRDs into the cluster in your kubeconfig.
	kubectl apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: ## Remove the CRDs from the cluster in your kubeconfig.
	kubectl delete --ignore-not-found -f config/crd/bases

# The demo's data plane: test (test/gateway, in process) or traefik.
GATEWAY ?=

.PHONY: demo
demo: test-deps $(if $(filter traefik,$(GATEWAY)),traefik) ## Start a local stack and run a live rollout (see README); GATEWAY=traefik runs it through Traefik.
	go run ./test/cmd/demo $(if $(GATEWAY),--gateway=$(GATEWAY)) $(DEMO_FLAGS)
