# kubernetes-executor — the commands the README gives. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/debug
CLUSTER_DIR := $(CURDIR)/target/cluster
KUBECONFIG_FILE := $(CLUSTER_DIR)/kubeconfig

.PHONY: help controlplane build image e2e crds go-api manifests docs check-crds fmt lint test fuzz cluster-up cluster-down demo bench bench-5k bench-history

help: ## List targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

controlplane: ## Build (or reuse) etcd, kube-apiserver, controllers, kubectl, kwok, kubelet and kube-proxy from Go modules
	@bash tests/controlplane/build.sh >/dev/null

build: ## Build the operator and the test tools
	$(CARGO) build --workspace --bins

# The operator's image as an OCI archive, built with no container engine from
# deploy/Dockerfile's final stage (a static binary, CA certificates, user 65532).
IMAGE ?= docker.io/library/kubernetes-executor:dev
IMAGE_ARCHIVE ?= $(TARGET_DIR)/image/kubernetes-executor.oci.tar
HOST_TARGET := x86_64-unknown-linux-gnu

image: ## Build the operator image as an OCI archive (no Docker needed; `ctr images import` / `docker load` it)
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
	  $(CARGO) build --release --locked --target $(HOST_TARGET) --bin kubernetes-executor
	$(CARGO) run -q -p kubernetes-executor-testkit --bin ke-image -- --dockerfile deploy/Dockerfile --context . \
	  --map /src/target=$(TARGET_DIR) --map /src=. --name $(IMAGE) --out $(IMAGE_ARCHIVE)

e2e: controlplane image ## On a real node (containerd, runc, kubelet; needs root): kubectl apply -k deploy/, failover, actions in containers
	KE_IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) $(CARGO) test --test e2e -- --nocapture

crds: ## Regenerate deploy/crds/ from the Rust types
	$(CARGO) run -q -p kubernetes-executor-crds --bin crdgen > deploy/crds/kubernetesexecutions.yaml

go-api: ## Regenerate the Go API's DeepCopy methods and apply configurations (crds/go) with controller-gen
	cd crds/go && "$$(bash ../../tests/gotools/build.sh controller-gen)" object applyconfiguration paths=./...

manifests: crds ## Regenerate deploy/ files generated from code and policies/
	$(CARGO) run -q --bin kubernetes-executor -- rbac > deploy/rbac/actions.yaml
	$(CARGO) run -q --bin kubernetes-executor -- admission > deploy/admission/policies.yaml
	$(CARGO) run -q --bin kubernetes-executor -- policies-configmap --dir policies > deploy/policies-configmap.yaml

docs: ## Regenerate the parts of docs/ generated from code (the policy input reference)
	UPDATE_DOCS=1 $(CARGO) test -q -p kubernetes-executor-actors --lib the_documented_input_is_the_struct

check-crds: ## Fail when deploy/crds/ differs from what the types generate
	@$(CARGO) run -q -p kubernetes-executor-crds --bin crdgen | diff -u deploy/crds/kubernetesexecutions.yaml - \
	  || { echo "deploy/crds/ is stale: run 'make crds'"; exit 1; }

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## rustfmt check and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: controlplane image ## Run every test (unit, Rego, integration against the local control plane, the real-node e2e)
	KE_IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) $(CARGO) test --workspace --no-fail-fast

FUZZ_CASES ?= 200000

fuzz: ## Property tests of validation, durations and the phase machine with many cases (not in CI)
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p kubernetes-executor-actors --test properties

cluster-up: controlplane build ## Start a local control plane with kwok nodes and the job runner in the background (REAL_NODE=1: also a real node, as root)
	@mkdir -p $(CLUSTER_DIR)
	@if [ -f $(CLUSTER_DIR)/pid ] && kill -0 $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null; then \
	  echo "cluster already running (pid $$(cat $(CLUSTER_DIR)/pid))"; exit 0; fi
	@rm -f $(CLUSTER_DIR)/ready
	@$(if $(REAL_NODE),$(MAKE) -s image,true)
	@nohup $(BIN)/ke-cluster --dir $(CLUSTER_DIR) --nodes 2 --runner-binary $(BIN)/kubernetes-executor \
	  $(if $(REAL_NODE),--real-node --image-archive $(IMAGE_ARCHIVE)) \
	  > $(CLUSTER_DIR)/ke-cluster.log 2>&1 < /dev/null & echo $$! > $(CLUSTER_DIR)/pid
	@for i in $$(seq 1 300); do [ -f $(CLUSTER_DIR)/ready ] && break; \
	  kill -0 $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null || { cat $(CLUSTER_DIR)/ke-cluster.log; exit 1; }; sleep 0.5; done
	@[ -f $(CLUSTER_DIR)/ready ] || { cat $(CLUSTER_DIR)/ke-cluster.log; exit 1; }
	@echo "Local control plane is up at $$(cat $(CLUSTER_DIR)/ready)."
	@echo "  export KUBECONFIG=$(KUBECONFIG_FILE)"
	@echo "  $$(bash tests/controlplane/build.sh)/kubectl get nodes"
	@echo "Stop it with: make cluster-down"

cluster-down: ## Stop the local control plane started by cluster-up
	@if [ -f $(CLUSTER_DIR)/pid ]; then pid=$$(cat $(CLUSTER_DIR)/pid); \
	  kill -TERM $$pid 2>/dev/null || true; \
	  for i in $$(seq 1 100); do kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	  kill -KILL $$pid 2>/dev/null || true; rm -f $(CLUSTER_DIR)/pid $(CLUSTER_DIR)/ready; \
	  echo "cluster stopped"; else echo "no cluster running"; fi

LOADTEST := $(TARGET_DIR)/release/ke-loadtest

bench: controlplane ## Micro-benchmarks, then a 1,000-execution load test and a dry-run throughput run (release build)
	$(CARGO) bench -p kubernetes-executor-actors --bench hot_paths --bench policy_latency
	$(CARGO) build --release -p kubernetes-executor -p kubernetes-executor-loadtest --bins
	$(LOADTEST) -n 1000 --rate 100 --out target/loadtest/mixed
	$(LOADTEST) -n 1000 --rate 0 --mix dry=1 --out target/loadtest/dry-max

# ALLOCATOR=system or ALLOCATOR=mimalloc builds the operator with that allocator instead of jemalloc.
bench-5k: controlplane ## 5,000 executions in flight at once (created before the operator starts); ALLOCATOR=system|mimalloc to compare
	$(CARGO) build --release -p kubernetes-executor-loadtest --bins
	$(CARGO) build --release -p kubernetes-executor --bins $(if $(ALLOCATOR),--no-default-features $(if $(filter-out system,$(ALLOCATOR)),--features $(ALLOCATOR)))
	$(LOADTEST) -n 5000 --backlog --mix dry=1 --no-floor --settle 60 --out target/loadtest/backlog-5k$(if $(ALLOCATOR),-$(ALLOCATOR))

bench-history: controlplane ## 10,000 finished executions, then a fresh operator over them: time to ready and memory
	$(CARGO) build --release -p kubernetes-executor -p kubernetes-executor-loadtest --bins
	$(LOADTEST) -n 10000 --rate 0 --mix deny=1 --no-floor --restart --restart-window 30 --timeout 1800 --out target/loadtest/history-10k

demo: controlplane build ## Run the operator on the local control plane with a few executions and print their status
	bash hack/demo.sh
