# Portico. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
CONTROLLER_GEN := go tool controller-gen
# Packages whose +kubebuilder:rbac markers become one generated role each, in
# config/rbac/<last path element>: every controller binary's package, the node agent, and
# the webhook certificate rotation that webhook-serving controllers add. A new
# controllers/<name> gets its role (and the chart its RBAC) without touching this file.
RBAC_DIRS := $(wildcard controllers/*) $(wildcard nodeagent) internal/webhookcert
# Binaries that ship as images (portico-demo and kubectl-portico run on a user's machine).
IMAGE_BINARIES := $(filter-out portico-demo kubectl-portico,$(notdir $(wildcard cmd/*)))
CHART := charts/portico
VERSION ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' $(CHART)/Chart.yaml)
PLATFORMS ?= linux/amd64,linux/arm64
# Files and folders that are generated: `make verify` fails when they are stale.
GENERATED := apis/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac config/webhook $(CHART)/crds $(CHART)/files bundle config/gateway-api

.PHONY: help
help: ## List targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: generate
generate: ## Generate deepcopy functions from apis/.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./apis/...

.PHONY: manifests
manifests: ## Generate CRDs, per-binary RBAC and webhook configurations from markers.
	$(CONTROLLER_GEN) crd:allowDangerousTypes=false paths=./apis/... output:crd:artifacts:config=config/crd/bases
	@rm -rf config/rbac/*/role.yaml
	@for dir in $(RBAC_DIRS); do \
	  c=$$(basename $$dir); \
	  if grep -rqs '+kubebuilder:rbac' $$dir; then \
	    echo "rbac: $$c"; \
	    $(CONTROLLER_GEN) rbac:roleName=portico-$$c paths=./$$dir/... output:rbac:artifacts:config=config/rbac/$$c || exit 1; \
	  fi; \
	done
	@if grep -rqs '+kubebuilder:webhook' webhooks; then \
	  $(CONTROLLER_GEN) webhook paths=./webhooks/... output:webhook:artifacts:config=config/webhook; fi
	@$(MAKE) -s gateway-api-crds

.PHONY: gateway-api-crds
gateway-api-crds: ## Copy the Gateway API CRDs of the module version in go.mod (experimental channel: TLSRoute modes, CORS, retries) into config/gateway-api.
	@src=$$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/experimental; \
	rm -rf config/gateway-api && mkdir -p config/gateway-api && \
	for f in $$src/gateway.networking.k8s.io_*.yaml; do \
	  case $$f in *_vap_*) continue ;; esac; \
	  install -m 0644 $$f config/gateway-api/; \
	done

.PHONY: chart
chart: manifests ## Copy the generated CRDs, roles and webhooks into the Helm chart (charts/portico).
	@rm -rf $(CHART)/crds $(CHART)/files/rbac $(CHART)/files/webhooks.yaml
	@mkdir -p $(CHART)/crds $(CHART)/files/rbac
	@cp config/crd/bases/*.yaml $(CHART)/crds/
	@for d in config/rbac/*/; do cp $$d/role.yaml $(CHART)/files/rbac/$$(basename $$d).yaml; done
	@cp config/webhook/manifests.yaml $(CHART)/files/webhooks.yaml

.PHONY: bundle
bundle: chart ## Generate the OLM bundle (bundle/) from the Helm chart.
	go run ./hack/bundlegen

.PHONY: images
images: ## Build one image per binary and the OLM bundle image (OCI layouts and archives in _output/images, amd64 and arm64), no Docker needed.
	go run ./hack/images -out _output/images -version $(VERSION) -platforms $(PLATFORMS) -bundle bundle $(IMAGE_BINARIES)

.PHONY: print-generated
print-generated:
	@echo $(GENERATED)

.PHONY: verify
verify: ## Fail when generated files are stale, or code is not gofmt/vet clean.
	@bash hack/verify.sh

.PHONY: envtest-assets
envtest-assets: ## Provide kube-apiserver and etcd for tests (cached outside the repo).
	@bash hack/envtest-assets.sh

.PHONY: test
test: ## Run every test against a real apiserver (root also runs the network-namespace tests).
	@bash hack/test.sh

.PHONY: demo
demo: ## Run Portico on this machine (as root: three nodes in network namespaces and a client) and show what it does.
	@bash hack/demo.sh $(ARGS)

.PHONY: demo-down
demo-down: ## Remove every namespace, link, bpffs mount and process a demo left.
	@bash hack/demo.sh --down

.PHONY: bench
bench: ## Run the Go benchmarks and print one table (figure, value, command).
	@bash hack/bench.sh $(ARGS)

.PHONY: e2e
e2e: ## Run the Ginkgo end-to-end suite (e2e/) on a local cluster (root) or PORTICO_E2E_KUBECONFIG.
	@bash hack/e2e.sh $(ARGS)
