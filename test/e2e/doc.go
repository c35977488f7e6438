// Package e2e is the end-to-end suite: the stack of `make demo` (package
// test/demo: kube-apiserver and etcd, vLLM simulators, the test gateway,
// Prometheus, Alertmanager and the operator built from this repository and
// run as a process), driven headless. The specs are in the _test.go files;
// run them with `make test-e2e`.
package e2e
