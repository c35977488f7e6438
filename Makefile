# ModelRollout: progressive delivery of LLM inference services on Gateway API.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

K8S_VERSION ?= v1.37.2
CONTROLLER_GEN ?= go tool controller-gen
CRD_REF_DOCS ?= go tool crd-ref-docs
# Extra flags for every go test make test runs, e.g. GOTEST_FLAGS=-v.
GOTEST_FLAGS ?=
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
verify: ## Fail when generated files drift from the sources, code is unformatted, or a linter complains.
	@$(MAKE) --no-print-directory -j1 verify-generated lint

.PHONY: verify-generated
verify-generated: ## Fail when the generated files (CRDs, RBAC, deepcopy, API reference, Argo CD scripts) drift from the sources.
	@$(MAKE) --no-print-directory -j1 manifests generate
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

# make test runs in two phases, each two jobs at a time (make -j2). First the
# control plane (kube-apiserver, etcd), Prometheus and Alertmanager, and the
# generated files, checked for drift: the suites read them. Then the
# controllers suite, the longest, starts at once; it mostly waits (on bake
# times, gate intervals, the API server, Prometheus), so on a cold 2-core
# machine the builds the other suites need (Traefik, Argo CD's module,
# kube-controller-manager and kwok) and the linters go on beside it. The
# other suites start once every build is done, so that two of them never
# hold both places while a build waits. A failing part does not stop the
# others (make -k): every failure is reported. Each part runs one test
# binary at a time, built with every core. The builds take a lock
# (bin/.lock-*), so two makes that need one binary build it once.
TEST_SUITES := test-controllers test-traefik test-argocd test-workloads test-unit
TEST_BUILDS := traefik argocd-build workload-plane
# Set by make test: what the suites but the controllers suite wait for
# besides the binaries they run.
TEST_BEFORE_OTHERS ?=
# What every suite needs; make test builds it in its first phase and empties
# it for the second, so that the controllers suite has nothing to wait for
# (make -j2 would give both places to the next goals' builds meanwhile).
SUITE_DEPS ?= control-plane test-deps
# The packages test-unit runs: all but those of the other suites.
UNIT_PKGS = $$(go list ./... | grep -vE '/(controllers|test/workloads|test/e2e|test/traefik)$$')

# go-test-each runs go test on each package in turn, goes on past a failure,
# and fails at the end if one failed.
go-test-each = fail=0; for p in $(1); do go test -count=1 $(GOTEST_FLAGS) -timeout 45m "$$p" || fail=1; done; exit $$fail

.PHONY: test
test: ## Run all tests: make verify, unit, integration on a real API server and Prometheus, e2e, a real gateway and Argo CD's code.
	@$(MAKE) --no-print-directory -j2 control-plane verify-generated test-deps
	@$(MAKE) --no-print-directory -j2 -k SUITE_DEPS= TEST_BEFORE_OTHERS="$(TEST_BUILDS)" test-controllers $(TEST_BUILDS) lint test-traefik test-argocd test-workloads test-unit

.PHONY: test-controllers
test-controllers: $(SUITE_DEPS) ## Run the controllers suite (real API server and Prometheus).
	go test -count=1 $(GOTEST_FLAGS) -timeout 45m ./controllers

.PHONY: test-unit
test-unit: $(SUITE_DEPS) | $(TEST_BEFORE_OTHERS) ## Run every package's tests but the suites that have their own target.
	@$(call go-test-each,$(UNIT_PKGS))

.PHONY: test-workloads
test-workloads: workload-plane $(SUITE_DEPS) | $(TEST_BEFORE_OTHERS) ## Run the suites on real Deployments and Pods (kube-controller-manager, kwok): workloads and e2e.
	@$(call go-test-each,./test/workloads ./test/e2e)

.PHONY: test-traefik
test-traefik: traefik $(SUITE_DEPS) | $(TEST_BEFORE_OTHERS) ## Run the real-gateway suite (Traefik).
	go test -count=1 $(GOTEST_FLAGS) -timeout 30m ./test/traefik

.PHONY: argocd-build
argocd-build: ## Build the Argo CD suite's test binary (its own module, test/argocd-upstream).
	cd test/argocd-upstream && go test -c -o /dev/null .

.PHONY: test-argocd
test-argocd: argocd-build $(SUITE_DEPS) | $(TEST_BEFORE_OTHERS) ## Run Argo CD's own code (Lua VM, normalizers, diff) against live objects.
	cd test/argocd-upstream && go test -count=1 $(GOTEST_FLAGS) -timeout 20m ./...

.PHONY: test-release
test-release: test-deps ## Run the release tests for every released platform (make test builds only this machine's).
	RELEASE_TEST_PLATFORMS=all go test -count=1 -timeout 45m ./test/release/

.PHONY: test-e2e
test-e2e: test-deps workload-plane ## Run only the end-to-end suite.
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
