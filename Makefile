# wharfjobs — build, test, benchmark and lint.
#
# Everything the tests need is installed by these targets into .cache/
# (git-ignored): a pinned MinIO server (module from the Go module proxy plus
# one fix, hack/minio), staticcheck, the Kubernetes binaries and wharf-api.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

CACHE       := $(CURDIR)/.cache
CACHE_BIN   := $(CACHE)/bin
# MinIO server release used by the tests (a module pseudo-version of
# github.com/minio/minio). Bump it here only.
MINIO_VERSION       := v0.0.0-20260212201848-7aac2a2c5b7c
STATICCHECK_VERSION := v0.8.2
# wharf-api release the aggregator is tested against, and the swag that
# generates its docs package (absent from the module).
WHARF_API_VERSION   := v5.2.0
SWAG_VERSION        := v1.8.1
WHARF_API           := $(CACHE_BIN)/wharf-api-$(WHARF_API_VERSION)
KUBE_VERSION        := v1.34.4
# What the step types' end-to-end test (internal/e2e/steptypes_test.go)
# runs: a registry, kaniko's executor (docker steps) and helm.
REGISTRY_VERSION    := v3.1.2
KANIKO_VERSION      := v1.23.2
HELM_VERSION        := v3.22.0
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34
MINIO       := $(CACHE_BIN)/minio
MINIO_STAMP := $(CACHE_BIN)/.minio-$(MINIO_VERSION)
STATICCHECK := $(CACHE_BIN)/staticcheck-$(STATICCHECK_VERSION)
REGISTRY_STAMP := $(CACHE_BIN)/.registry-$(REGISTRY_VERSION)
KANIKO_STAMP   := $(CACHE_BIN)/.kaniko-$(KANIKO_VERSION)
HELM_STAMP     := $(CACHE_BIN)/.helm-$(HELM_VERSION)
COREDNS_VERSION := v1.15.0
COREDNS_STAMP  := $(CACHE_BIN)/.coredns-$(COREDNS_VERSION)
# KEDA's operator, which scales the Helm test's aggregator from and to zero;
# internal/testcluster's KEDAModule (its CRDs) names the same version.
KEDA_VERSION   := v2.21.0
KEDA_STAMP     := $(CACHE_BIN)/.keda-$(KEDA_VERSION)

GO          ?= go
# module-src: a writable copy of module@version's source at dir, for tools
# built as the main module (their replace directives then apply):
# $(call module-src,module@version,dir).
module-src = rm -rf $(2) && dir=$$(cd "$$(mktemp -d)" && GOFLAGS= $(GO) mod download -json $(1) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
	test -n "$$dir" && cp -r "$$dir" $(2) && chmod -R u+w $(2)
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X main.version=$(VERSION)
TEST_FLAGS  ?= -race -count=1 -timeout 30m
export WHARFJOBS_MINIO_BIN := $(MINIO)
# The image (Dockerfile): the docker client, the image's name and the Debian
# its runtime files come from; DEBIAN_BASE is that Debian as a root file
# system tarball for `docker import` where no registry serves it.
DOCKER      ?= docker
IMAGE       ?= wharfjobs
IMAGE_BASE  ?= debian:bookworm-slim
DEBIAN_BASE := $(CACHE)/debian-bookworm-minbase.tar

.PHONY: all build image image-tarball debian-base test vet unit bench bench-all lint fmt minio kube-bins etcd node-deps engines tools wharf-api registry kaniko helm coredns keda staticcheck demo clean cluster-up cluster-down

all: build

## build: the static wharfjobs binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/wharfjobs ./cmd/wharfjobs

## image: bin/wharfjobs, then the image from the Dockerfile, tagged $(IMAGE):$(VERSION) and $(IMAGE):latest
# --network host: the Dockerfile's deps stage runs apt-get, and a dockerd
# started with --bridge none (the tests' private one, internal/enginetest)
# has no network to give a build container otherwise. Only RUN steps use it.
image: build
	$(DOCKER) build --network host --build-arg BASE=$(IMAGE_BASE) \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
	  -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

## image-tarball: docker save of the image (both tags) to bin/wharfjobs-$(VERSION).tar, for docker load or ctr import
image-tarball: image
	$(DOCKER) save -o bin/wharfjobs-$(VERSION).tar $(IMAGE):$(VERSION) $(IMAGE):latest

## debian-base: .cache/debian-bookworm-minbase.tar, Debian bookworm (debootstrap --variant=minbase) for `docker import` without a registry (once; root and apt)
# The image's test (deploy/image) imports it as debian:bookworm-slim. Its
# APT sources are the slim image's (bookworm, -updates, -security); the
# package lists and .debs debootstrap leaves are dropped (the Dockerfile
# runs apt-get update).
debian-base: $(DEBIAN_BASE)
$(DEBIAN_BASE):
	@p=debootstrap; $(DEB_INSTALLED) || { echo "installing debootstrap from Debian"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap) >/dev/null; }
	@mkdir -p $(CACHE)
	@echo "debootstrap --variant=minbase bookworm into $@ (about a minute, once)"
	rm -rf $(CACHE)/debian-base-tmp
	debootstrap --variant=minbase bookworm $(CACHE)/debian-base-tmp http://deb.debian.org/debian >$(CACHE)/debian-base.log 2>&1 || \
	  { tail -n 20 $(CACHE)/debian-base.log; exit 1; }
	rm -f $(CACHE)/debian-base-tmp/etc/apt/sources.list
	printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm bookworm-updates' 'Components: main' \
	  'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' 'Types: deb' 'URIs: http://deb.debian.org/debian-security' \
	  'Suites: bookworm-security' 'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
	  >$(CACHE)/debian-base-tmp/etc/apt/sources.list.d/debian.sources
	rm -rf $(CACHE)/debian-base-tmp/var/lib/apt/lists/* $(CACHE)/debian-base-tmp/var/cache/apt/archives/*.deb
	tar -C $(CACHE)/debian-base-tmp -c . >$@.tmp
	mv $@.tmp $@
	rm -rf $(CACHE)/debian-base-tmp

## test: vet, then every test (unit, and integration against a real MinIO and a real kube-apiserver) with the race detector
test: minio kube-bins coredns keda etcd node-deps engines tools wharf-api registry kaniko helm debian-base vet
	$(GO) test $(TEST_FLAGS) ./...

vet:
	$(GO) vet ./...

## bench: the performance table of README.md (internal/benchtable: each measure beside its baseline in the same run, and the goal)
bench: minio kube-bins coredns etcd node-deps engines
	$(GO) run ./internal/benchtable

## bench-all: every Go benchmark against a real MinIO and kube-apiserver on loopback, and the fs store
bench-all: minio kube-bins coredns etcd node-deps engines
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

## lint: gofmt check, go vet, staticcheck
lint: staticcheck vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## minio: build the pinned MinIO server into .cache/bin (once), with hack/minio/flush.go (see there why)
minio: $(MINIO_STAMP)
$(MINIO_STAMP): hack/minio/flush.go
	@mkdir -p $(CACHE_BIN)
	@echo "building MinIO $(MINIO_VERSION) into $(CACHE_BIN) (a few minutes, once)"
	$(call module-src,github.com/minio/minio@$(MINIO_VERSION),$(CACHE)/minio-src)
	cp hack/minio/flush.go $(CACHE)/minio-src/cmd/zz_wharfjobs_flush.go
	cd $(CACHE)/minio-src && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -tags wharfjobs_minio -o $(MINIO) .
	rm -rf $(CACHE)/minio-src
	@rm -f $(CACHE_BIN)/.minio-*
	@touch $@

## kube-bins: build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl from k8s.io/kubernetes into .cache/bin (once)
KUBE_BINS := kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
KUBE_TARGETS := $(addprefix $(CACHE_BIN)/,$(KUBE_BINS))
kube-bins: $(KUBE_TARGETS)
# The version is in hack/kube/go.mod: bumping it rebuilds every binary.
$(KUBE_TARGETS): $(CACHE_BIN)/%: hack/kube/go.mod hack/kube/go.sum hack/kube/%/main.go
	@mkdir -p $(CACHE_BIN)
	@echo "building $* $(KUBE_VERSION) into $(CACHE_BIN) (minutes the first time)"
	cd hack/kube && GONOSUMDB=k8s.io/kubernetes GOFLAGS=-mod=mod $(GO) build -ldflags '$(KUBE_LDFLAGS)' -o $@ ./$*

## wharf-api: build wharf-api $(WHARF_API_VERSION) with SQLite into .cache/bin (once; needs gcc for cgo)
wharf-api: $(WHARF_API)
$(WHARF_API):
	@mkdir -p $(CACHE_BIN)
	@echo "building wharf-api $(WHARF_API_VERSION) into $(CACHE_BIN) (about two minutes, once)"
	GOBIN=$(CACHE_BIN) $(GO) install github.com/swaggo/swag/cmd/swag@$(SWAG_VERSION)
	rm -rf $(CACHE)/wharf-api-src
	dir=$$(cd "$$(mktemp -d)" && GOFLAGS= $(GO) mod download -json github.com/iver-wharf/wharf-api/v5@$(WHARF_API_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -n "$$dir" && cp -r "$$dir" $(CACHE)/wharf-api-src && chmod -R u+w $(CACHE)/wharf-api-src
	cd $(CACHE)/wharf-api-src && $(CACHE_BIN)/swag init --parseDependency --parseDepth 2 >/dev/null
	cd $(CACHE)/wharf-api-src && CGO_ENABLED=1 GOFLAGS=-mod=mod $(GO) build -o $@ .
	rm -rf $(CACHE)/wharf-api-src

# DEB_INSTALLED succeeds when the package $$p is installed: `dpkg -s` alone
# also succeeds for a package removed with its configuration files kept.
DEB_INSTALLED = dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q '^install ok installed$$'

## node-deps: install Debian's containerd, runc, CNI plugins, busybox-static, iproute2, iptables (kube-proxy's) and git for the test node (when missing)
NODE_DEBS := containerd runc containernetworking-plugins busybox-static iproute2 iptables git
node-deps:
	@missing=""; \
	for p in $(NODE_DEBS); do $(DEB_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing from Debian:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; fi

## engines: install Debian's docker.io, podman and busybox-static for the OCI runner's tests (when missing)
# The tests start private engines themselves (internal/enginetest). docker.io's
# postinst would start the machine's dockerd, which changes the machine's
# network (docker0, iptables): a policy-rc.d that answers 101 ("action
# forbidden") keeps every service stopped during the install, and goes again
# afterwards unless the machine already had one.
ENGINE_DEBS := docker.io podman busybox-static
engines:
	@missing=""; \
	for p in $(ENGINE_DEBS); do $(DEB_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing from Debian:$$missing"; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; fi

## tools: install Debian's zstd (when missing): tests read the log chunks with the reference decoder as an operator would (`mc cat ... | zstd -d`)
TOOL_DEBS := zstd
tools:
	@missing=""; \
	for p in $(TOOL_DEBS); do $(DEB_INSTALLED) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing from Debian:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; fi

## etcd: install Debian's etcd-server when no etcd is on the PATH
etcd:
	@command -v etcd >/dev/null || { echo "installing etcd-server from Debian"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server) >/dev/null; }
	@etcd --version | sed -n 1p  # head would close the pipe early: SIGPIPE under pipefail

## registry: build the CNCF Distribution registry $(REGISTRY_VERSION) into .cache/bin (once), for the step types' end-to-end test
registry: $(REGISTRY_STAMP)
$(REGISTRY_STAMP):
	@mkdir -p $(CACHE_BIN)
	@echo "building registry $(REGISTRY_VERSION) into $(CACHE_BIN) (minutes, once)"
	rm -rf $(CACHE)/registry-tmp
	GOBIN=$(CACHE)/registry-tmp CGO_ENABLED=0 $(GO) install -trimpath github.com/distribution/distribution/v3/cmd/registry@$(REGISTRY_VERSION)
	mv $(CACHE)/registry-tmp/registry $(CACHE_BIN)/registry
	rm -rf $(CACHE)/registry-tmp
	@rm -f $(CACHE_BIN)/.registry-*
	@touch $@

## kaniko: build kaniko's executor $(KANIKO_VERSION) (static) into .cache/bin/kaniko-executor (once), the docker steps' builder.
# Not `go install ...@$(KANIKO_VERSION)`: that reads the module's version list, which the proxy refuses (403) for this archived module.
kaniko: $(KANIKO_STAMP)
$(KANIKO_STAMP):
	@mkdir -p $(CACHE_BIN)
	@echo "building kaniko $(KANIKO_VERSION) into $(CACHE_BIN) (minutes, once)"
	rm -rf $(CACHE)/kaniko-src
	dir=$$(cd "$$(mktemp -d)" && GOFLAGS= $(GO) mod download -json github.com/GoogleContainerTools/kaniko@$(KANIKO_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -n "$$dir" && cp -r "$$dir" $(CACHE)/kaniko-src && chmod -R u+w $(CACHE)/kaniko-src
	cd $(CACHE)/kaniko-src && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -trimpath \
	  -ldflags '-X github.com/GoogleContainerTools/kaniko/pkg/version.version=$(KANIKO_VERSION)' \
	  -o $(CACHE_BIN)/kaniko-executor ./cmd/executor
	rm -rf $(CACHE)/kaniko-src
	@rm -f $(CACHE_BIN)/.kaniko-*
	@touch $@

## coredns: build CoreDNS $(COREDNS_VERSION) into .cache/bin (once), the test node's cluster DNS
coredns: $(COREDNS_STAMP)
$(COREDNS_STAMP):
	@mkdir -p $(CACHE_BIN)
	@echo "building CoreDNS $(COREDNS_VERSION) into $(CACHE_BIN) (minutes, once)"
	rm -rf $(CACHE)/coredns-tmp
	GOBIN=$(CACHE)/coredns-tmp CGO_ENABLED=0 $(GO) install -trimpath github.com/coredns/coredns@$(COREDNS_VERSION)
	mv $(CACHE)/coredns-tmp/coredns $(CACHE_BIN)/coredns
	rm -rf $(CACHE)/coredns-tmp
	@rm -f $(CACHE_BIN)/.coredns-*
	@touch $@

## keda: build KEDA's operator $(KEDA_VERSION) into .cache/bin (once; ~8 min, 250 MB),
## for the Helm test's scale to zero. Its go.mod has a replace directive, so
## `go install pkg@version` refuses it: it is built as the main module from
## a copy of the module's source, as MinIO is.
keda: $(KEDA_STAMP)
$(KEDA_STAMP):
	@mkdir -p $(CACHE_BIN)
	@echo "building KEDA's operator $(KEDA_VERSION) into $(CACHE_BIN) (minutes, once)"
	$(call module-src,github.com/kedacore/keda/v2@$(KEDA_VERSION),$(CACHE)/keda-src)
	cd $(CACHE)/keda-src && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -trimpath -o $(CACHE_BIN)/keda-operator ./cmd/operator
	rm -rf $(CACHE)/keda-src
	@rm -f $(CACHE_BIN)/.keda-*
	@touch $@

## helm: build helm $(HELM_VERSION) (static) into .cache/bin (once), the helm steps' tool
helm: $(HELM_STAMP)
$(HELM_STAMP):
	@mkdir -p $(CACHE_BIN)
	@echo "building helm $(HELM_VERSION) into $(CACHE_BIN) (minutes, once)"
	rm -rf $(CACHE)/helm-tmp
	GOBIN=$(CACHE)/helm-tmp CGO_ENABLED=0 $(GO) install -trimpath \
	  -ldflags '-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v3/internal/version.metadata=' \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(CACHE)/helm-tmp/helm $(CACHE_BIN)/helm
	rm -rf $(CACHE)/helm-tmp
	@rm -f $(CACHE_BIN)/.helm-*
	@touch $@

staticcheck: $(STATICCHECK)
$(STATICCHECK):
	@mkdir -p $(CACHE_BIN)
	GOBIN=$(CACHE)/staticcheck-tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(CACHE)/staticcheck-tmp/staticcheck $@
	rm -rf $(CACHE)/staticcheck-tmp

## cluster-up / cluster-down: the tests' cluster (control plane and a node with containerd) by hand, for kubectl
cluster-up: kube-bins coredns etcd node-deps
	$(GO) run ./internal/testcluster/clusterctl up
cluster-down:
	$(GO) run ./internal/testcluster/clusterctl down

## demo: the README's first command
demo:
	$(GO) run ./cmd/wharfjobs dev --demo

clean:
	rm -rf bin .wharfjobs
