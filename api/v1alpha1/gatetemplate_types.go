package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GateTemplateKind is the kind of a gate template.
//
// +kubebuilder:validation:Enum=GateTemplate;ClusterGateTemplate
type GateTemplateKind string

const (
	// GateTemplateKindNamespaced is a GateTemplate in the rollout's namespace.
	GateTemplateKindNamespaced GateTemplateKind = "GateTemplate"
	// GateTemplateKindCluster is a cluster-scoped ClusterGateTemplate.
	GateTemplateKindCluster GateTemplateKind = "ClusterGateTemplate"
)

// GateTemplateRef names the template a gate uses.
type GateTemplateRef struct {
	// kind of the template: GateTemplate (default), in the rollout's
	// namespace, or ClusterGateTemplate.
	//
	// +optional
	// +kubebuilder:default=GateTemplate
	Kind GateTemplateKind `json:"kind,omitempty"`

	// name of the template.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// KindOrDefault returns the template's kind, GateTemplate when unset.
func (r GateTemplateRef) KindOrDefault() GateTemplateKind {
	if r.Kind == "" {
		return GateTemplateKindNamespaced
	}
	return r.Kind
}

// String renders the reference as Kind/name, e.g. ClusterGateTemplate/error-ratio.
func (r GateTemplateRef) String() string {
	return string(r.KindOrDefault()) + "/" + r.Name
}

// ArgName is the name of a template argument, used in the template as
// {{ .Args.<name> }}: a letter or underscore, then letters, digits and
// underscores.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
type ArgName string

// GateArg is the value of one template argument.
type GateArg struct {
	// name of the argument, as the template declares it.
	//
	// +required
	Name ArgName `json:"name"`

	// value of the argument. In the template it prints escaped for the
	// inside of a double-quoted PromQL string, like {{ .Canary }}.
	//
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`
}

// GateTemplateArg declares an argument of a template.
type GateTemplateArg struct {
	// name of the argument; the template uses it as {{ .Args.<name> }}.
	//
	// +required
	Name ArgName `json:"name"`

	// default is the value when a gate does not pass the argument. Without
	// a default the argument is required.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Default *string `json:"default,omitempty"`

	// description says what the argument means, for the people who use
	// the template.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
}

// GateTemplateSpec is a gate body with declared arguments.
//
// +kubebuilder:validation:XValidation:rule="!has(self.gate.minRequests) || has(self.gate.preset) || has(self.gate.requestsQuery)",message="minRequests on a custom query needs requestsQuery, the PromQL that counts the canary's requests"
// +kubebuilder:validation:XValidation:rule="[self.gate.?query.orValue('-'), self.gate.?selector.orValue('-'), self.gate.?requestsQuery.orValue('-')].all(s, s.findAll('[.]Args[.][A-Za-z_][A-Za-z0-9_]*').all(m, has(self.args) && self.args.exists(a, m == '.Args.' + a.name)))",message="the gate uses an argument {{ .Args.<name> }} that spec.args does not declare: declare every argument the query, selector and requestsQuery use"
type GateTemplateSpec struct {
	// args declares the arguments the gate's templates use as
	// {{ .Args.<name> }}. A gate that references the template passes
	// values for them in its args.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Args []GateTemplateArg `json:"args,omitempty"`

	// gate is the gate body: a preset or a query, with its thresholds and
	// policies. Thresholds may be left to the gates that reference the
	// template; a gate's own min, max and minRequests override these.
	//
	// +required
	// +kubebuilder:validation:XValidation:rule="[has(self.preset), has(self.query), has(self.web), has(self.prompt)].filter(x, x).size() == 1",message="set exactly one gate kind: preset, query, web or prompt"
	// +kubebuilder:validation:XValidation:rule="!has(self.prompt) || (!has(self.minRequests) && !has(self.requestsQuery) && !has(self.selector))",message="minRequests, requestsQuery and selector apply to PromQL gates only: remove them from a prompt gate"
	// +kubebuilder:validation:XValidation:rule="!has(self.web) || (!has(self.minRequests) && !has(self.requestsQuery) && !has(self.selector))",message="minRequests, requestsQuery and selector apply only to PromQL gates (preset or query), not to web gates"
	// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="min must not be greater than max"
	Gate GateSpec `json:"gate"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=gt,categories=modelrollouts
// +kubebuilder:printcolumn:name="Preset",type=string,JSONPath=`.spec.gate.preset`
// +kubebuilder:printcolumn:name="Min",type=number,JSONPath=`.spec.gate.min`
// +kubebuilder:printcolumn:name="Max",type=number,JSONPath=`.spec.gate.max`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Query",type=string,JSONPath=`.spec.gate.query`,priority=1

// GateTemplate is a gate body with arguments that the ModelRollouts of its
// namespace reference from spec.analysis.gates[].templateRef.
type GateTemplate struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the gate the template provides.
	// +required
	Spec GateTemplateSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// GateTemplateList is a list of GateTemplates.
type GateTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GateTemplate `json:"items"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cgt,categories=modelrollouts
// +kubebuilder:printcolumn:name="Preset",type=string,JSONPath=`.spec.gate.preset`
// +kubebuilder:printcolumn:name="Min",type=number,JSONPath=`.spec.gate.min`
// +kubebuilder:printcolumn:name="Max",type=number,JSONPath=`.spec.gate.max`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Query",type=string,JSONPath=`.spec.gate.query`,priority=1

// ClusterGateTemplate is a gate body with arguments that ModelRollouts of
// every namespace reference from spec.analysis.gates[].templateRef with
// kind ClusterGateTemplate.
type ClusterGateTemplate struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the gate the template provides.
	// +required
	Spec GateTemplateSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// ClusterGateTemplateList is a list of ClusterGateTemplates.
type ClusterGateTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterGateTemplate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GateTemplate{}, &GateTemplateList{}, &ClusterGateTemplate{}, &ClusterGateTemplateList{})
}
