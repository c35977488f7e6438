// Package argocd tests the "HTTPRoute weights and self-heal" recipe of
// config/argocd/README.md against real HTTPRoutes on a real API server
// (envtest, with the Gateway API CRDs), with the weights written by the real
// operator running in the test process.
//
// Argo CD's own Go modules cannot be built here (the README says why, with
// the exact errors), so the tests model the three parts of Argo CD that the
// recipe relies on, written after reading Argo CD's code:
//
//   - the ignoreDifferences normalizer: a jqPathExpressions entry becomes
//     del(<expression>) run by gojq, a jsonPointers entry a JSON patch
//     "remove"; an operation that fails is skipped, and empty objects and
//     arrays are pruned afterwards; an entry applies when group and kind
//     match and its name and namespace are empty or equal;
//   - the comparison of the default client-side apply: live, Git and the
//     last-applied configuration are normalized, live loses the fields the
//     last-applied configuration does not have (server defaults), a
//     three-way JSON merge patch is computed and the resource is OutOfSync
//     when applying it would change live;
//   - RespectIgnoreDifferences=true: the merge patch from the normalized
//     live to the live object is applied to the normalized Git object, and
//     the result is what a sync applies (kubectl apply semantics, written
//     through the API server here).
package argocd
