package bundle_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"

	"github.com/portico-dev/portico/internal/bundle"
	"github.com/portico-dev/portico/internal/chart"
)

// TestBundleValidates runs operator-framework's validators over bundle/ as
// `operator-sdk bundle validate --select-optional suite=operatorframework` would: the
// default bundle validators plus OperatorHub v2 and the standard capability and
// category checks. Any error fails; warnings are logged.
func TestBundleValidates(t *testing.T) {
	b, err := manifests.GetBundleFromDir(bundle.Dir())
	if err != nil {
		t.Fatalf("loading bundle/: %v", err)
	}
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator, validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator, validation.AlphaDeprecatedAPIsValidator)
	objs := append(b.ObjectsToValidate(), map[string]string{"k8s-version": "1.37"})
	checked := 0
	for _, res := range validators.Validate(objs...) {
		checked++
		for _, e := range res.Errors {
			t.Errorf("%s: %v", res.Name, e)
		}
		for _, w := range res.Warnings {
			t.Logf("warning: %s: %v", res.Name, w)
		}
	}
	if checked == 0 {
		t.Fatal("the validators returned no result at all")
	}
	if b.CSV == nil || len(b.V1CRDs) == 0 {
		t.Fatalf("bundle without CSV or CRDs")
	}
}

// TestBundleIsGenerated: bundle/ is what `make bundle` makes of the current chart.
func TestBundleIsGenerated(t *testing.T) {
	dir := t.TempDir()
	if err := bundle.Generate(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(bundle.Dir(), rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("bundle/%s is stale or missing: run make bundle", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBundleInstallsTheChartsControllers: one deployment, ServiceAccount permissions
// and webhook definitions per shipped controller, permissions for the agent.
func TestBundleInstallsTheChartsControllers(t *testing.T) {
	b, err := manifests.GetBundleFromDir(bundle.Dir())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := chart.Controllers()
	if err != nil {
		t.Fatal(err)
	}
	install := b.CSV.Spec.InstallStrategy.StrategySpec
	deployments, perms := map[string]bool{}, map[string]bool{}
	for _, d := range install.DeploymentSpecs {
		deployments[d.Name] = true
	}
	for _, p := range install.ClusterPermissions {
		perms[p.ServiceAccountName] = true
	}
	hooks := map[string]string{}
	for _, w := range b.CSV.Spec.WebhookDefinitions {
		hooks[w.GenerateName] = w.DeploymentName
	}
	for _, c := range cs {
		name := bundle.Package + "-" + c.Component
		if deployments[name] != c.Shipped || perms[name] != c.Shipped {
			t.Errorf("controllers.%s (shipped %v): deployment %v, permissions %v", c.Key, c.Shipped, deployments[name], perms[name])
		}
		for _, w := range c.Webhooks {
			if c.Shipped && hooks[w] != name {
				t.Errorf("webhook %s is served by %q, want %s", w, hooks[w], name)
			}
		}
	}
	if !perms[bundle.Package+"-nodeagent"] {
		t.Error("no permissions for the node agent's ServiceAccount")
	}
}
