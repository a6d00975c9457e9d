package ocibuild_test

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/portico-dev/portico/internal/ocibuild"
)

// TestBuild: one image per platform in one index, the binary as entrypoint and only
// file, the user as asked, and the same inputs giving the same digest.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	bins := map[string]string{}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		path := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(path, []byte("binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[p] = path
	}
	img := ocibuild.Image{Binary: "l2-controller", Binaries: bins, User: ocibuild.NonRoot,
		Labels: map[string]string{"org.opencontainers.image.version": "1.2.3"}}
	idx, err := ocibuild.Build(img)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layout")
	digest, err := ocibuild.WriteLayout(out, idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ocibuild.Archive(out, out+".oci.tar"); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	read, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	// The layout's index.json is the image index itself.
	written := read
	if d, _ := written.Digest(); d != digest {
		t.Fatalf("layout holds %s, Build returned %s", d, digest)
	}
	m, err := written.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 {
		t.Fatalf("%d platforms, want 2", len(m.Manifests))
	}
	for _, d := range m.Manifests {
		im, err := written.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := im.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		plat := cf.OS + "/" + cf.Architecture
		if d.Platform == nil || d.Platform.Architecture != cf.Architecture || bins[plat] == "" {
			t.Errorf("manifest platform %v, config %s", d.Platform, plat)
		}
		if cf.Config.User != ocibuild.NonRoot || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/l2-controller" {
			t.Errorf("%s: user %q entrypoint %v", plat, cf.Config.User, cf.Config.Entrypoint)
		}
		if !cf.Created.IsZero() {
			t.Errorf("%s: created %v: a build time makes digests differ between builds", plat, cf.Created)
		}
		layers, _ := im.Layers()
		if len(layers) != 1 {
			t.Errorf("%s: %d layers, want the binary's only", plat, len(layers))
		}
	}
	again, err := ocibuild.Build(img)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != digest {
		t.Errorf("rebuilding gave %s, then %s: not reproducible", digest, d)
	}
}

// TestFiles: a files-only image (the OLM bundle image) carries the directories under
// their names and the labels.
func TestFiles(t *testing.T) {
	src := t.TempDir()
	for name, data := range map[string]string{"manifests/csv.yaml": "kind: ClusterServiceVersion", "metadata/annotations.yaml": "annotations: {}"} {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"operators.operatorframework.io.bundle.package.v1": "portico"}
	idx, err := ocibuild.Files(map[string]string{"manifests": filepath.Join(src, "manifests"), "metadata": filepath.Join(src, "metadata")}, labels)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("index: %v, %d manifests", err, len(m.Manifests))
	}
	im, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := im.ConfigFile()
	if cf.Config.Labels["operators.operatorframework.io.bundle.package.v1"] != "portico" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	layers, _ := im.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	found := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		found[h.Name] = true
	}
	for _, want := range []string{"manifests/csv.yaml", "metadata/annotations.yaml"} {
		if !found[want] {
			t.Errorf("the image lacks %s (has %v)", want, found)
		}
	}
}
