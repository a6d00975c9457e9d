// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest)
// with Portico's CRDs installed, for every integration test. The binaries come from
// hack/envtest-assets.sh, which builds them once into a cache outside the repository
// when they cannot be downloaded.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/portico-dev/portico/internal/scheme"
)

// Env is a running control plane.
type Env struct {
	Config     *rest.Config
	Client     client.Client
	Scheme     *kruntime.Scheme
	Kubeconfig string // path of an admin kubeconfig, for kubectl
	Webhook    envtest.WebhookInstallOptions

	env     *envtest.Environment
	dir     string
	kubectl string
}

// Options change what Start installs.
type Options struct {
	// Webhooks installs the ValidatingWebhookConfigurations in config/webhook; the test
	// serves them on Env.Webhook.LocalServingHost/Port with Env.Webhook.LocalServingCertDir.
	Webhooks bool
	// ExtraCRDDirs are installed besides Portico's CRDs.
	ExtraCRDDirs []string
	// GatewayAPI installs the Gateway API CRDs of config/gateway-api (the
	// module version in go.mod, with its bundle-version annotation).
	GatewayAPI bool
	// APIServerArgs are appended to kube-apiserver's flags (e.g. --advertise-address).
	APIServerArgs map[string]string
	// ListenHost binds the apiserver to this address instead of 127.0.0.1, so that agents in
	// network namespaces can reach it over a management link.
	ListenHost string
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Assets returns the directory with kube-apiserver and etcd: KUBEBUILDER_ASSETS when set,
// otherwise what hack/envtest-assets.sh provides.
func Assets() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "hack", "envtest-assets.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/envtest-assets.sh: %w: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Scheme returns the scheme every Portico binary uses.
func Scheme() *kruntime.Scheme { return scheme.New() }

// Codecs is a codec factory for Scheme(), e.g. to decode YAML fixtures.
func Codecs() serializer.CodecFactory { return serializer.NewCodecFactory(Scheme()) }

// Start starts etcd and kube-apiserver, installs the CRDs and returns a client.
func Start(opts Options) (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	root := RepoRoot()
	e := &Env{Scheme: Scheme()}
	e.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crdDirs(root, opts),
		ErrorIfCRDPathMissing:    true,
		Scheme:                   e.Scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if opts.Webhooks {
		e.env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}}
	}
	api := e.env.ControlPlane.GetAPIServer()
	if opts.ListenHost != "" {
		// envtest replaces a host given without a port by its own loopback choice.
		port, err := freePort(opts.ListenHost)
		if err != nil {
			return nil, err
		}
		api.SecureServing.ListenAddr.Address = opts.ListenHost
		api.SecureServing.ListenAddr.Port = strconv.Itoa(port)
	}
	for k, v := range opts.APIServerArgs {
		api.Configure().Set(k, v)
	}
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	e.Config = cfg
	e.Webhook = e.env.WebhookInstallOptions
	if e.Client, err = client.New(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if e.dir, err = os.MkdirTemp("", "portico-testenv-"); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	user, err := e.env.AddUser(envtest.User{Name: "portico-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	e.kubectl = "kubectl"
	if p := filepath.Join(assets, "kubectl"); fileExists(p) {
		e.kubectl = p
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kc, 0o600); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

func crdDirs(root string, opts Options) []string {
	dirs := append([]string{filepath.Join(root, "config", "crd", "bases")}, opts.ExtraCRDDirs...)
	if opts.GatewayAPI {
		dirs = append(dirs, filepath.Join(root, "config", "gateway-api"))
	}
	return dirs
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
	return err
}

// Kubectl runs kubectl against the control plane and returns its standard output, or an
// error carrying its standard error.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
