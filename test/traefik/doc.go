// Package traefik runs the operator's story through a real Gateway API
// data plane: Traefik v3.7.13 (its kubernetesGateway provider, built from the
// Go module proxy by test/scripts/traefik.sh, `make traefik`), on the stack
// of test/demo started with Gateway: demo.GatewayTraefik. Traefik reads the
// Gateway, the HTTPRoutes and the EndpointSlices from the test API server,
// routes real HTTP to the vLLM simulators, and Prometheus scrapes its own
// metrics.
//
// Traefik balances a rule's backendRefs by weighted round robin (earliest
// deadline first), rebuilt from scratch with every new configuration, so
// the split of a batch sent right after a weight change is exact: 200
// requests at 25% are 150 and 50, not about. The specs assert exact counts,
// both as the load generator saw them (the simulators' x-backend header)
// and as Traefik counted them (traefik_service_requests_total), and that
// Traefik did not reload its configuration during the batch.
//
// Where Traefik and the test gateway (test/gateway) behave differently in
// what the operator relies on, the specs say so; docs/guides/traefik.md tells users.
// TEST-ONLY; nothing here ships.
package traefik
