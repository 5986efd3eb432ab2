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

.PHONY: all build setup-test setup-demo kube test test-short demo bench bench-quick lint fmt clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build eco-hub, eco-agent and the dev commands into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

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

demo: setup-demo kube ## run the local demo in the foreground until Ctrl-C
	$(GO) build -o $(BIN)/eco-agent ./cmd/eco-agent
	cd /tmp && GOBIN=$(BIN) GOFLAGS= $(GO) install helm.sh/helm/v4/cmd/helm@v4.3.2  # the helm CLI, to see the add-ons' releases
	$(GO) run ./cmd/eco-demo --agent-bin=$(BIN)/eco-agent

bench: kube ## side-by-side benchmark (eco, remotedialer, direct, revproxy) and the real-path table; < 10 min
	cd bench && $(GO) build -o $(BIN)/ecobench ./cmd/ecobench
	$(BIN)/ecobench -real -out bench/results.json

bench-quick: ## a short smoke run of the same benchmark (< 2 min); prints the table, writes bench/results.json
	cd bench && $(GO) build -o $(BIN)/ecobench ./cmd/ecobench
	$(BIN)/ecobench -quick -out bench/results.json

lint: ## gofmt, go vet and staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output and demo state
	rm -rf $(BIN) $(ECO_DEMO_DIR)
