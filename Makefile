# Portico. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
CONTROLLER_GEN := go tool controller-gen
# Binaries whose RBAC is generated from +kubebuilder:rbac markers in their own packages.
RBAC_COMPONENTS := $(notdir $(wildcard controllers/*)) $(if $(wildcard nodeagent),nodeagent)
# Files and folders that are generated: `make verify` fails when they are stale.
GENERATED := apis/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac config/webhook config/gateway-api

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
	@for c in $(RBAC_COMPONENTS); do \
	  dir=controllers/$$c; [ $$c = nodeagent ] && dir=nodeagent; \
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
demo: ## Start a local control plane, install the CRDs and sample objects, show them.
	@bash hack/demo.sh $(ARGS)
