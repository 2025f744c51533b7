# vectl build, test and install. See README.md for the two commands a newcomer needs.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Static binary: cgo is required by libcontainer's nsenter; glibc and Debian's libseccomp.a
# are linked in; netgo/osusergo keep glibc's NSS (which cannot be static) out. Not PIE: a
# static-pie binary relocates ~1 MiB of Go's pointer tables at every exec, which would more
# than double the memory of each VE's idle monitor (container/idle).
TAGS    := seccomp netgo osusergo urfave_cli_no_docs
LDFLAGS := -s -w -X github.com/vectl/vectl/commands.Version=$(VERSION) -linkmode external -extldflags -static
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Go 1.26's Green Tea collector keeps the mark bits of a small-object span inside the span,
# which makes a short-lived process touch more fresh pages: `vectl --version` took about 540
# page faults with it and about 410 with the classic collector (Go 1.25's), and page faults
# are the largest part of a vectl command's start-up on a VM. The opt-out exists as long as
# Go 1.26 is the toolchain; drop it when the experiment is gone.
GOEXP   := nogreenteagc

# Debian packages the build, the tests and the demo need.
DEB_BUILD := gcc libc6-dev libseccomp-dev make git zstd
DEB_RUN   := busybox-static debootstrap e2fsprogs iproute2 nftables iptables tmux procps ca-certificates xz-utils tcpdump iputils-ping

.PHONY: all test lint check integration install clean deps demo FORCE

all: bin/vectl

bin/vectl: plugins FORCE
	CGO_ENABLED=1 GOEXPERIMENT=$(GOEXP) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $@ .
	@ldd $@ 2>&1 | grep -qE 'statically linked|not a dynamic executable' || { echo "$@ is not static:"; ldd $@; exit 1; }

# The upstream CNI plugins, pinned by network/cnitools/go.mod and embedded in bin/vectl by
# network/cniplugins: zstd blobs, VERSION, and a MANIFEST ("name sha256 size" of each plugin)
# that extraction checks against. One go build makes all three (a grouped target: the recipe
# runs once); they are rebuilt only when the pin changes. The version is read from that go.mod
# so that the pin lives in one place.
CNI_BIN      := network/cniplugins/bin
CNI_PLUGINS  := ptp bridge static
CNI_OUT      := $(CNI_BIN)/VERSION $(CNI_BIN)/MANIFEST $(addprefix $(CNI_BIN)/,$(addsuffix .zst,$(CNI_PLUGINS)))
CNI_VERSION   = $(shell awk '$$1 == "github.com/containernetworking/plugins" { print $$2 }' network/cnitools/go.mod)

.PHONY: plugins
plugins: $(CNI_OUT)

$(CNI_OUT) &: network/cnitools/go.mod network/cnitools/go.sum
	@test -n "$(CNI_VERSION)" || { echo "no containernetworking/plugins version in network/cnitools/go.mod"; exit 1; }
	rm -rf bin/cni-plugins $(CNI_BIN)/*.zst $(CNI_BIN)/VERSION $(CNI_BIN)/MANIFEST
	cd network/cnitools && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(CNI_VERSION)" \
		-o $(CURDIR)/bin/cni-plugins/ tool
	cd bin/cni-plugins && for p in $(CNI_PLUGINS); do \
		sum=$$(sha256sum < $$p) && size=$$(stat -c %s $$p) && echo "$$p $${sum%% *} $$size" || exit 1; \
	done > MANIFEST
	for p in $(CNI_PLUGINS); do zstd -19 -q -f --rm bin/cni-plugins/$$p -o $(CNI_BIN)/$$p.zst || exit 1; done
	mv bin/cni-plugins/MANIFEST $(CNI_BIN)/MANIFEST
	echo $(CNI_VERSION) > $(CNI_BIN)/VERSION
	rm -rf bin/cni-plugins

# Unit tests: unprivileged, offline.
test:
	$(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags 'integration vmtest $(TAGS)' ./integration/...
	$(GO) run $(STATICCHECK) -tags '$(TAGS)' ./...
	$(GO) run $(STATICCHECK) -tags 'integration vmtest $(TAGS)' ./integration/...
	@bad=$$($(GO) list -f '{{join .Imports "\n"}}' ./commands/... | \
		grep -E 'opencontainers/runc/libcontainer|containernetworking/cni/libcni|vishvananda/netlink' || true); \
		if [ -n "$$bad" ]; then echo "commands/ must not import: $$bad"; exit 1; fi

# Unit and integration tests; integration needs root and real namespaces.
check: bin/vectl test integration

integration: bin/vectl
	VECTL_BIN=$(CURDIR)/bin/vectl $(GO) test -tags integration -count=1 -timeout 80m -v ./integration/...

# A subset of the integration suite in a Debian 12 VM with systemd as PID 1 and cgroup v2,
# with the fs and the systemd cgroup driver (qemu TCG, no network device), as root. About 13.5
# minutes, plus about 2 the first time to build the VM image (cached in
# /var/cache/vectl-test/vm). See integration/vm/README.md.
.PHONY: vm-test
vm-test: bin/vectl
	VECTL_BIN=$(CURDIR)/bin/vectl bash integration/vm/vm-test.sh

# Benchmarks against runc, crun, LXC and systemd-nspawn, as root (installs them; about 15
# minutes; not part of .ci/run). Writes integration/bench/results/: results.md, results.json,
# chart.png and README-section.md. BENCHFLAGS=-quick for a smoke run.
.PHONY: bench
bench: bin/vectl
	$(GO) run ./integration/bench -vectl $(CURDIR)/bin/vectl -out $(CURDIR)/integration/bench/results $(BENCHFLAGS)

install: bin/vectl
	install -D -m 0755 bin/vectl $(DESTDIR)$(PREFIX)/sbin/vectl

clean:
	rm -rf bin
	rm -f $(CNI_BIN)/*.zst $(CNI_BIN)/VERSION $(CNI_BIN)/MANIFEST

# Installs what building and testing need on a fresh Debian 12 machine (as root).
deps:
	@missing=""; for p in $(DEB_BUILD) $(DEB_RUN); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get -o DPkg::Lock::Timeout=600 update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $$missing; \
	fi
	$(GO) mod download
	cd network/cnitools && $(GO) mod download

# The main job: build, make the default template, create VE $(VE) with its own address
# (from the default pool 10.199.0.0/16), start it, show it running and reachable.
VE ?= 101
DEMO_TEMPLATE ?= busybox-1.35-x86_64
DEMO_IP ?= 10.199.0.$(VE)
demo: bin/vectl
	bin/vectl template list -j | grep -q '"name": "$(DEMO_TEMPLATE)"' || \
		bin/vectl template build $(DEMO_TEMPLATE) --from busybox
	bin/vectl status $(VE) | grep -q deleted && bin/vectl create $(VE) --ostemplate $(DEMO_TEMPLATE) --hostname ve$(VE) \
		--ipadd $(DEMO_IP) || true
	bin/vectl status $(VE) | grep -q running || bin/vectl start $(VE) --wait
	bin/vectl list
	bin/vectl exec $(VE) ps
	ping -c 1 $(DEMO_IP)
