// Package workloads tests the operator against real workload controllers:
// a real kube-apiserver and etcd (envtest), kube-controller-manager's
// Deployment, ReplicaSet, EndpointSlice and ServiceAccount controllers, and
// kwok, which plays the kubelet of fake GPU nodes (pods become Running and
// Ready). Scaling a Deployment then really creates or removes pods, and the
// EndpointSlice controller really updates the slices the operator reads.
//
// The binaries are built by test/scripts/workload-plane.sh into
// bin/control-plane/<version>/ (`make workload-plane`, part of `make test`).
package workloads
