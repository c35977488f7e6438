package controllers

import (
	"context"
	"fmt"
	"strings"

	"github.com/modelrollout/modelrollout/internal/plan"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Every authSecretRef (web gates, webhooks, Prometheus) is read here: a
// Secret of the rollout's own namespace (the reference has no namespace
// field), of a type meant to hold credentials for a third party. A service
// account token, a registry pull secret or any other type is refused before
// anything is sent: naming a Secret in a rollout must not let its author,
// who may not read Secrets, send one to a URL of their choice.

// authSecretTypes are the Secret types an authSecretRef may name.
var authSecretTypes = []corev1.SecretType{corev1.SecretTypeOpaque, corev1.SecretTypeBasicAuth, corev1.SecretTypeTLS}

// authSecretTypeNames lists authSecretTypes for messages.
func authSecretTypeNames() string {
	names := make([]string, len(authSecretTypes))
	for i, t := range authSecretTypes {
		names[i] = string(t)
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// readAuthSecret reads the Secret name of namespace for an authSecretRef.
// what says whose Secret it is ("web auth Secret"). refused is what the user
// must fix: a name that is no Secret name, a missing Secret, no permission, a
// type other than authSecretTypes. err is transient.
func readAuthSecret(ctx context.Context, r client.Reader, namespace, name, what string) (secret *corev1.Secret, refused string, err error) {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Sprintf("%s %q is not a Secret name: %s", what, plan.Truncate(name, 253), msgs[0]), nil
	}
	secret = &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, secret); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Sprintf("%s %s not found in namespace %s", what, name, namespace), nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return nil, fmt.Sprintf("read %s %s: %s", what, name, apiMessage(err)), nil
		}
		return nil, "", fmt.Errorf("read %s %s/%s: %w", what, namespace, name, err)
	}
	t := secret.Type
	if t == "" {
		// The API server defaults the type; an object without one is
		// Opaque.
		t = corev1.SecretTypeOpaque
	}
	for _, ok := range authSecretTypes {
		if t == ok {
			return secret, "", nil
		}
	}
	return nil, fmt.Sprintf("%s %s is of type %s: authSecretRef reads only %s Secrets; nothing was sent. Put the credentials in a Secret of one of those types",
		what, name, plan.Truncate(string(t), 253), authSecretTypeNames()), nil
}
