# eco's entry points. `make demo` and `make test` are the two set-up
# commands README promises: on a fresh machine they build everything they
# need (Kubernetes from Go modules, cached by version) before running.

GO            ?= go
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN           := $(CURDIR)/bin
ECO_DEMO_DIR  ?= $(CURDIR)/.eco-demo
TEST_FLAGS    ?= -race -count=1 -timeout=40m
PKGS          ?= ./...

export ECO_DEMO_DIR

.PHONY: images push
.PHONY: all build generate setup-test setup-demo kube test test-short demo bench bench-quick lint fmt clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: generate ## build eco-hub, eco-agent, ecoctl and the dev commands into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

# The hub's built-in add-on charts that git does not hold (the real
# metrics-server chart, from its Go module) go into catalog/chartrepo/builtin,
# which eco-hub embeds: build, images and demo generate them first
# (docs/decisions/0023-builtin-addon-charts.md).
generate: ## write the generated add-on charts eco-hub embeds (go generate ./catalog/chartrepo)
	$(GO) generate ./catalog/chartrepo

setup-test: ## install what the tests need and the machine lacks (tools/setup.sh: apt as root, else says the command)
	@bash tools/setup.sh test

setup-demo: ## check what the demo needs (tools/setup.sh)
	@bash tools/setup.sh demo

kube: ## build (or find cached) kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok
	$(GO) run ./cmd/eco-localcluster build --module tools/kube

test: setup-test kube ## run every test against real local clusters (installs missing Debian packages first)
	$(GO) test $(TEST_FLAGS) $(PKGS)

test-short: ## unit tests only (no local cluster)
	$(GO) test -short -count=1 $(PKGS)

demo: setup-demo kube generate ## run the local demo in the foreground until Ctrl-C
	$(GO) build -o $(BIN)/eco-agent ./cmd/eco-agent
	cd /tmp && GOBIN=$(BIN) GOFLAGS= $(GO) install helm.sh/helm/v4/cmd/helm@v4.3.2  # the helm CLI, to see the add-ons' releases
	$(GO) run ./cmd/eco-demo --agent-bin=$(BIN)/eco-agent

bench: kube ## side-by-side benchmark (eco, remotedialer, direct, revproxy), the real-path table, then bench-argocd; < 15 min warm
	cd bench && $(GO) build -o $(BIN)/ecobench ./cmd/ecobench
	$(BIN)/ecobench -real -out bench/results.json
	$(MAKE) bench-argocd

bench-quick: ## a short smoke run of the same benchmark (< 2 min); prints the table, writes bench/results.json
	cd bench && $(GO) build -o $(BIN)/ecobench ./cmd/ecobench
	$(BIN)/ecobench -quick -out bench/results.json

# Argo CD (docs/argocd.md): its own module e2e/argocd, with argo-cd's replace block.
.PHONY: argocd test-argocd bench-argocd demo-argocd
argocd: ## build (or find cached) Argo CD v3.2.11's own binary (~/.cache/eco/argocd/), with progress
	cd e2e/argocd && $(GO) run ./cmd/argocd-build

demo-argocd: setup-test kube argocd generate ## make demo, plus the real Argo CD syncing an example Application through the hub
	$(GO) build -o $(BIN)/eco-agent ./cmd/eco-agent
	$(GO) run ./cmd/eco-demo --agent-bin=$(BIN)/eco-agent \
		--argocd-bin="$$(cd e2e/argocd && $(GO) run ./cmd/argocd-build)" \
		--argocd-crds="$$(cd e2e/argocd && $(GO) list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)/manifests/crds"

test-argocd: setup-test kube argocd ## Argo CD's own code and binaries against eco (e2e/argocd)
	cd e2e/argocd && $(GO) test -count=1 -timeout=30m ./...

bench-argocd: kube ## Argo CD's cluster cache through the hub; 1,000 registrations (docs/argocd.md, Load)
	$(GO) test -run '^$$' -bench BenchmarkRegister1000 -benchtime=1x ./hub/argocd
	cd e2e/argocd && $(GO) test -run '^$$' -bench . -benchtime=1x -timeout=30m .

lint: ## gofmt, go vet and staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

# Images and release artefacts (issue 19): no Docker daemon, no base image.
# VERSION tags the images; REGISTRY is where they go (and which agent image
# the hub in the hub image names, by digest); SOURCE_DATE_EPOCH (the commit
# time) fixes every timestamp, so the same commit gives the same digests.
VERSION           ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null)
REGISTRY          ?= ghcr.io/eco-project
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGES_DIR        ?= $(BIN)/images
SBOM_TOOL         ?= $(GO) run github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
export SOURCE_DATE_EPOCH

images: generate ## build the eco-agent and eco-hub images (linux/amd64+arm64) as OCI layouts in ./bin/images, and CycloneDX SBOMs in ./bin/images/sbom
	$(GO) run ./cmd/eco-image build --out=$(IMAGES_DIR) --version=$(VERSION) --revision=$(REVISION) --registry=$(REGISTRY) --sbom-tool="$(SBOM_TOOL)"

push: images ## push the images: make push REGISTRY=registry.example.com/eco (credentials from ~/.docker/config.json)
	$(GO) run ./cmd/eco-image push --out=$(IMAGES_DIR) --registry=$(REGISTRY) $(PUSH_FLAGS)

clean: ## remove build output and demo state
	rm -rf $(BIN) $(ECO_DEMO_DIR)
