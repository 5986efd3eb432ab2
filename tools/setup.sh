#!/usr/bin/env bash
# tools/setup.sh PURPOSE — install what the machine lacks for PURPOSE.
#
# The one set-up script of the project: `make test`, `make demo` and
# `.ci/run` all call it, so what a fresh machine gets cannot drift between
# them. PURPOSE is one of
#   demo  the local demo (Go toolchain only; the Kubernetes binaries are
#         built from Go modules by `make kube`, not here)
#   test  every test: gcc for -race, Debian's Chromium for the UI tests
#   ci    what .ci/run needs: test's list
#
# Run as root, it installs the missing Debian packages with apt-get (one
# `apt-get update` first, only when something is missing). Run as another
# user, it prints the one command to run and exits 1, before any test runs:
# a missing dependency is an error, never a skipped test.
#
# It prints one line per dependency and is quick when nothing is missing
# (no network, ~20 ms). ECO_SETUP_DRY_RUN=1 prints what it would do and
# changes nothing.
set -euo pipefail

purpose=${1:-}
case "$purpose" in
demo | test | ci) ;;
*)
	echo "usage: tools/setup.sh demo|test|ci" >&2
	exit 2
	;;
esac

# need COMMAND-OR-PATH DEBIAN-PACKAGE WHY: one row of what PURPOSE needs.
missing_pkgs=()
missing_why=()
need() {
	local probe=$1 pkg=$2 why=$3
	if [[ $probe == /* ]]; then
		[[ -x $probe ]] && return 0
	elif command -v "$probe" >/dev/null 2>&1; then
		return 0
	fi
	missing_pkgs+=("$pkg")
	missing_why+=("$pkg ($why)")
}

# Go itself comes from the machine (/usr/local/go): apt's is too old.
if ! command -v go >/dev/null 2>&1; then
	echo "setup: Go is not on PATH: install Go 1.26 (https://go.dev/dl) and add /usr/local/go/bin to PATH" >&2
	exit 1
fi
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [[ ! $go_minor =~ ^[0-9]+$ ]] || ((go_minor < 26)); then
	echo "setup: $(go env GOVERSION) is too old: eco needs Go 1.26 or newer" >&2
	exit 1
fi

need git git "version stamps and lint"
need make make "the entry points"
case "$purpose" in
test | ci)
	need gcc build-essential "cgo for go test -race"
	need /usr/bin/chromium chromium "the web UI's browser tests (hub/ui)"
	need redis-server redis-server "the real Argo CD's cache in e2e/argocd"
	need update-ca-certificates ca-certificates "the CA bundle make images puts in the images (image/)"
	;;
esac

if ((${#missing_pkgs[@]} == 0)); then
	echo "setup ($purpose): nothing to install"
	exit 0
fi

cmd="apt-get update && apt-get install -y ${missing_pkgs[*]}"
printf 'setup (%s): missing %s\n' "$purpose" "$(
	IFS=,
	echo "${missing_why[*]}"
)"
if [[ ${ECO_SETUP_DRY_RUN:-} == 1 ]]; then
	echo "setup: would run: $cmd"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "setup: not root, so installing nothing. Run this once, then again the same make command:" >&2
	echo "  sudo sh -c '$cmd'" >&2
	exit 1
fi

start=$(date +%s)
echo "setup: $cmd"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
echo "setup: installed ${missing_pkgs[*]} in $(($(date +%s) - start))s"
