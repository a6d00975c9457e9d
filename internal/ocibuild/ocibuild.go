// Package ocibuild assembles Portico's container images without a Docker daemon and
// without a base image (none can be pulled where the project is built): each image is
// one static binary on an empty filesystem, for every platform, written as an OCI image
// layout that `crane push`, `skopeo copy oci:` or `podman load` take as it is.
//
// Images are reproducible: layers and configs carry no build time, so the same binaries
// give the same digests, and a chart can pin them by digest.
package ocibuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user controller images run as (the distroless "nonroot" user).
const NonRoot = "65532:65532"

// Image describes one binary's image.
type Image struct {
	// Binary is the executable's name; it is installed as /<Binary> and is the entrypoint.
	Binary string
	// Binaries maps each platform ("linux/amd64") to the binary built for it.
	Binaries map[string]string
	// User the process runs as: NonRoot unless the binary needs root (say why in Labels).
	User string
	// Labels become image config labels (org.opencontainers.image.*).
	Labels map[string]string
}

// Build returns the multi-platform index of img.
func Build(img Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	if len(img.Binaries) == 0 {
		return nil, fmt.Errorf("%s: no platform", img.Binary)
	}
	for _, plat := range slices.Sorted(maps.Keys(img.Binaries)) {
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			return nil, err
		}
		im, err := platformImage(img, img.Binaries[plat], *p)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", img.Binary, plat, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: im, Descriptor: v1.Descriptor{Platform: p}})
	}
	return idx, nil
}

func platformImage(img Image, binary string, p v1.Platform) (v1.Image, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	layerTar, err := tarOf(img.Binary, data)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	im, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := im.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Entrypoint = []string{"/" + img.Binary}
	cf.Config.User = img.User
	cf.Config.Labels = img.Labels
	cf.Config.Env = []string{"PATH=/"}
	return mutate.ConfigFile(im, cf)
}

// Files is an image of files only (no entrypoint), such as an OLM bundle image:
// dirs maps each directory in the image ("manifests") to the directory to copy it from.
func Files(dirs map[string]string, labels map[string]string) (v1.ImageIndex, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, dst := range slices.Sorted(maps.Keys(dirs)) {
		src := dirs[dst]
		err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			name := filepath.ToSlash(filepath.Join(dst, rel))
			if info.IsDir() {
				return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX})
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := b.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	im, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := im.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Labels = labels
	if im, err = mutate.ConfigFile(im, cf); err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, mutate.IndexAddendum{Add: im,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}), nil
}

// tarOf is a layer holding /<name> (0755, root-owned, epoch time) and an empty /tmp.
func tarOf(name string, data []byte) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteLayout writes idx as an OCI image layout in dir (replacing what is there) and
// returns the index digest.
func WriteLayout(dir string, idx v1.ImageIndex) (v1.Hash, error) {
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	if _, err := layout.Write(dir, idx); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}

// Archive tars an OCI layout directory into path: the "oci-archive" form skopeo and
// podman read.
func Archive(dir, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		// No owner or time: the archive is as reproducible as the layout.
		hdr.Name, hdr.ModTime, hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = filepath.ToSlash(rel), time.Unix(0, 0), "", "", 0, 0
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
