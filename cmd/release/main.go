// Command release builds the manager's container image and the release
// bundle; `make image`, `make image-push` and `make release` run it. It is
// a build tool of this repository, not shipped. The logic lives in
// internal/release; this file only wires flags.
//
//	go run ./cmd/release image  [--version x.y.z] [--image repo:tag] [--base ref] [--push]
//	go run ./cmd/release image-ref [--version x.y.z]    # the default image reference
//	go run ./cmd/release bundle [--version x.y.z] --helm path
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelrollout/modelrollout/internal/release"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: release image|image-ref|bundle [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = image(ctx, os.Args[2:])
	case "bundle":
		err = bundle(ctx, os.Args[2:])
	case "image-ref":
		err = imageRef(ctx, os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "release: unknown command %q; want image, image-ref or bundle\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// common reads the build and the chart's defaults.
func common(ctx context.Context, version string) (release.Build, release.Chart, string, error) {
	root, err := os.Getwd()
	if err != nil {
		return release.Build{}, release.Chart{}, "", err
	}
	build, err := release.GitBuild(ctx, root)
	if err != nil {
		return build, release.Chart{}, "", err
	}
	chart, err := release.ReadChart(root)
	if err != nil {
		return build, chart, "", err
	}
	if version == "" {
		version = chart.AppVersion
	}
	return build, chart, version, release.CheckVersion(version)
}

func image(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	version := fs.String("version", "", "Release version x.y.z (org.opencontainers.image.version); the chart's appVersion when empty.")
	ref := fs.String("image", "", "Image reference; <chart image.repository>:<version> when empty.")
	base := fs.String("base", "", "Base image pulled from a registry, e.g. gcr.io/distroless/static:nonroot; built from scratch when empty.")
	caCerts := fs.String("ca-certs", release.DefaultCACerts, "PEM bundle of CA certificates for the scratch base.")
	licenses := fs.String("licenses", "NOASSERTION", "org.opencontainers.image.licenses, an SPDX expression; NOASSERTION (SPDX for \"not stated\") while the repository has no LICENSE.")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "Platforms of the image index.")
	out := fs.String("out", "bin/image", "Directory of the OCI layout and the docker load tarballs.")
	push := fs.Bool("push", false, "Also push the index to --image (credentials from the Docker config).")
	_ = fs.Parse(args)

	build, chart, v, err := common(ctx, *version)
	if err != nil {
		return err
	}
	if *ref == "" {
		*ref = chart.Repository + ":" + v
	}
	var ps []release.Platform
	for _, s := range strings.Split(*platforms, ",") {
		p, err := release.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	root, _ := os.Getwd()
	bins, err := release.GoBuildAll(ctx, root, "./cmd/manager", "manager", filepath.Join(*out, "build"), build.Describe, ps)
	if err != nil {
		return err
	}
	opts := release.ImageOptions{
		Ref: *ref, Version: v, Build: build, Licenses: *licenses,
		Binaries: bins, CACerts: *caCerts, Base: *base,
		BaseOptions: []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithContext(ctx)},
	}
	idx, err := release.BuildImage(opts)
	if err != nil {
		return err
	}
	files, err := release.WriteImage(idx, *ref, *out)
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s@%s (%s, version %s, binary %s)\n", *ref, digest, *platforms, v, build.Describe)
	fmt.Printf("  OCI layout     %s\n", files.Layout)
	for _, p := range ps {
		fmt.Printf("  docker load -i %s\n", files.Tarballs[p])
	}
	if *push {
		if err := release.PushImage(idx, *ref, remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("push %s: %w", *ref, err)
		}
		fmt.Printf("pushed %s@%s\n", *ref, digest)
	}
	return nil
}

func imageRef(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image-ref", flag.ExitOnError)
	version := fs.String("version", "", "Release version x.y.z; the chart's appVersion when empty.")
	_ = fs.Parse(args)
	_, chart, v, err := common(ctx, *version)
	if err != nil {
		return err
	}
	fmt.Println(chart.Repository + ":" + v)
	return nil
}

func bundle(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bundle", flag.ExitOnError)
	version := fs.String("version", "", "Release version x.y.z; the chart's appVersion when empty.")
	out := fs.String("out", "dist", "Directory written; its previous content is removed.")
	helm := fs.String("helm", "helm", "The helm CLI.")
	kubectl := fs.String("kubectl", "kubectl", "The kubectl CLI (kubectl kustomize).")
	downloadURL := fs.String("download-url", "", "Where the plugin archives are published; the GitHub release of v<version> when empty.")
	_ = fs.Parse(args)

	build, chart, v, err := common(ctx, *version)
	if err != nil {
		return err
	}
	if *downloadURL == "" {
		*downloadURL = release.DefaultDownloadURL(v)
	}
	root, _ := os.Getwd()
	tmp, err := os.MkdirTemp("", "modelrollout-plugin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	plugins, err := release.GoBuildAll(ctx, root, "./cmd/"+release.PluginName, release.PluginName, tmp, build.Describe, release.PluginPlatforms)
	if err != nil {
		return err
	}
	b, err := release.WriteBundle(ctx, release.BundleOptions{
		Root: root, Version: v, Build: build, Out: *out, Repository: chart.Repository,
		Kubectl: *kubectl, Helm: *helm, Plugins: plugins, DownloadURL: *downloadURL,
	})
	if err != nil {
		return err
	}
	fmt.Printf("release %s in %s: %s, %s, %d plugin archives, %s, %s\n", v, *out,
		filepath.Base(b.Install), filepath.Base(b.Chart), len(b.Archives), filepath.Base(b.Krew), filepath.Base(b.Checksums))
	return nil
}
