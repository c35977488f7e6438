package release

// The krew plugin manifest (krew.googlecontainertools.github.com/v1alpha2
// Plugin), with the fields krew documents in
// https://krew.sigs.k8s.io/docs/developer-guide/plugin-manifest/. The types
// are ours: krew's Go module requires k8s.io/client-go
// v11.0.0+incompatible, which would replace this module's client-go. The
// tests validate the manifest with krew's own validate-krew-manifest and
// install every archive with krew itself (test/scripts/krew.sh builds both).

// KrewPluginName is the plugin's name in the krew index.
const KrewPluginName = "modelrollout"

// KrewPlugin is a krew plugin manifest.
type KrewPlugin struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   KrewMetadata   `json:"metadata"`
	Spec       KrewPluginSpec `json:"spec"`
}

// KrewMetadata is the manifest's metadata.
type KrewMetadata struct {
	Name string `json:"name"`
}

// KrewPluginSpec is the manifest's spec.
type KrewPluginSpec struct {
	Version          string         `json:"version"`
	Homepage         string         `json:"homepage"`
	ShortDescription string         `json:"shortDescription"`
	Description      string         `json:"description"`
	Caveats          string         `json:"caveats,omitempty"`
	Platforms        []KrewPlatform `json:"platforms"`
}

// KrewPlatform is one archive and the platforms it installs on.
type KrewPlatform struct {
	Selector KrewSelector `json:"selector"`
	URI      string       `json:"uri"`
	Sha256   string       `json:"sha256"`
	Bin      string       `json:"bin"`
	Files    []KrewFile   `json:"files"`
}

// KrewSelector is a label selector on the os and arch labels.
type KrewSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

// KrewFile copies files matching From in the archive to To in the plugin's
// directory.
type KrewFile struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// NewKrewPlugin returns the manifest of a release.
func NewKrewPlugin(version string, platforms []KrewPlatform) KrewPlugin {
	return KrewPlugin{
		APIVersion: "krew.googlecontainertools.github.com/v1alpha2",
		Kind:       "Plugin",
		Metadata:   KrewMetadata{Name: KrewPluginName},
		Spec: KrewPluginSpec{
			Version:          "v" + version,
			Homepage:         Source,
			ShortDescription: "Steer canary rollouts of LLM inference services",
			Description: "Shows and steers ModelRollouts, the canary rollouts of LLM inference\n" +
				"services that the ModelRollout operator runs on Gateway API HTTPRoutes:\n" +
				"get, status (step, weights, gate values against thresholds, events),\n" +
				"promote, pause, resume, abort and retry.\n",
			Caveats: "This plugin needs the ModelRollout operator in the cluster:\n" +
				Source + "\n",
			Platforms: platforms,
		},
	}
}
