// Command images builds one image per Portico binary for several platforms without a
// Docker daemon (internal/ocibuild): static binaries (CGO off, trimmed paths, so builds
// are reproducible) on an empty filesystem. For each binary it writes an OCI image
// layout <out>/<binary>/ and its archive <out>/<binary>.oci.tar, and prints the index
// digest a chart can pin (values: controllers.<x>.digest, nodeAgent.digest).
//
//	go run ./hack/images -out _output/images -version 0.1.0 lbipam-controller node-agent
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/internal/ocibuild"
)

// rootBinaries need root: the node agent loads eBPF programs and answers ARP on the
// node's interfaces (the chart adds only the capabilities it needs).
var rootBinaries = map[string]bool{"node-agent": true}

func main() {
	out := flag.String("out", "_output/images", "output directory")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms")
	version := flag.String("version", "dev", "image version label")
	bundleDir := flag.String("bundle", "", "also build the OLM bundle image portico-bundle from this bundle directory")
	flag.Parse()
	if flag.NArg() == 0 && *bundleDir == "" {
		fmt.Fprintln(os.Stderr, "usage: images [-out dir] [-platforms p,...] [-version v] binary...")
		os.Exit(2)
	}
	if *bundleDir != "" {
		if err := bundleImage(*out, *bundleDir); err != nil {
			fmt.Fprintln(os.Stderr, "images:", err)
			os.Exit(1)
		}
	}
	if err := run(*out, strings.Split(*platforms, ","), *version, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(out string, platforms []string, version string, binaries []string) error {
	bin := filepath.Join(out, "bin")
	var digests strings.Builder
	for _, b := range binaries {
		img := ocibuild.Image{Binary: b, Binaries: map[string]string{}, User: ocibuild.NonRoot,
			Labels: map[string]string{
				"org.opencontainers.image.title":   b,
				"org.opencontainers.image.version": version,
				"org.opencontainers.image.source":  "https://github.com/portico-dev/portico",
			}}
		if rootBinaries[b] {
			img.User = "0:0"
		}
		for _, p := range platforms {
			os_, arch, ok := strings.Cut(p, "/")
			if !ok {
				return fmt.Errorf("platform %q: want os/arch", p)
			}
			path := filepath.Join(bin, os_+"-"+arch, b)
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "./cmd/"+b)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+os_, "GOARCH="+arch)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("building %s for %s: %w", b, p, err)
			}
			img.Binaries[p] = path
		}
		idx, err := ocibuild.Build(img)
		if err != nil {
			return err
		}
		dir := filepath.Join(out, b)
		digest, err := ocibuild.WriteLayout(dir, idx)
		if err != nil {
			return err
		}
		if err := ocibuild.Archive(dir, dir+".oci.tar"); err != nil {
			return err
		}
		fmt.Printf("%s\t%s\t%s.oci.tar\n", b, digest, dir)
		fmt.Fprintf(&digests, "%s %s\n", b, digest)
	}
	return os.WriteFile(filepath.Join(out, "digests.txt"), []byte(digests.String()), 0o644)
}

// bundleImage builds portico-bundle: manifests/ and metadata/ of the bundle, labelled
// with the bundle's annotations as OLM's bundle format asks.
func bundleImage(out, dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "metadata", "annotations.yaml"))
	if err != nil {
		return err
	}
	var ann struct{ Annotations map[string]string }
	if err := yaml.Unmarshal(data, &ann); err != nil {
		return err
	}
	idx, err := ocibuild.Files(map[string]string{"manifests": filepath.Join(dir, "manifests"),
		"metadata": filepath.Join(dir, "metadata")}, ann.Annotations)
	if err != nil {
		return err
	}
	layoutDir := filepath.Join(out, "portico-bundle")
	digest, err := ocibuild.WriteLayout(layoutDir, idx)
	if err != nil {
		return err
	}
	if err := ocibuild.Archive(layoutDir, layoutDir+".oci.tar"); err != nil {
		return err
	}
	fmt.Printf("portico-bundle\t%s\t%s.oci.tar\n", digest, layoutDir)
	return nil
}
