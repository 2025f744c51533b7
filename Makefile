# vectl build, test and install. See README.md for the two commands a newcomer needs.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Static binary: cgo is required by libcontainer's nsenter; musl (see "The C library" below)
# and Debian's libseccomp.a are linked in; netgo/osusergo keep the C library's user and host
# lookups out. Not PIE: a
# static-pie binary relocates ~1 MiB of Go's pointer tables at every exec, which would more
# than double the memory of each VE's idle monitor (container/idle). --wrap=mmap sends the Go
# runtime's memory mappings through container/prefault's __wrap_mmap, which puts the heap of a
# short-lived process in transparent huge pages (see container/prefault/thp.go); a plain
# `go build` leaves it out and works the same, with 4 KiB pages. --wrap=pthread_create sends
# the runtime's thread creations through container/slack's wrapper, which gives the runtime's
# sysmon thread 1 ms of timer slack (see container/slack/slack.go); -u pthread_create makes the
# static link take musl's, which only the wrapper names.
TAGS    := seccomp netgo osusergo urfave_cli_no_docs
EXTLDFLAGS := -static -Wl,--wrap=mmap -Wl,--wrap=pthread_create -Wl,-u,pthread_create
LDFLAGS := -s -w -X github.com/vectl/vectl/commands.Version=$(VERSION) -linkmode external -extldflags "$(EXTLDFLAGS)"
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Go 1.26's Green Tea collector keeps the mark bits of a small-object span inside the span,
# which makes a short-lived process touch more fresh pages: `vectl --version` took about 540
# page faults with it and about 410 with the classic collector (Go 1.25's), and page faults
# are the largest part of a vectl command's start-up on a VM. The opt-out exists as long as
# Go 1.26 is the toolchain; drop it when the experiment is gone.
# jsonv2 runs encoding/json on encoding/json/v2's implementation, same behaviour (the v1
# options), whose per-type tables and encoding allocate less: a run to exit of a busybox VE
# took about 100 page faults and 1 to 2 ms of CPU fewer (vectl's process encodes the OCI spec,
# libcontainer's config and state, vectl-init decodes the config; 2026-12-07). The tests run
# with the same experiments as the binary.
GOEXP   := nogreenteagc,jsonv2

# Debian packages that the build, the tests, `make vm-test` and `make bench` run or link,
# one list per purpose; `make deps` installs all of them. PROVIDES says what each package is
# there for: PROGRAM=PACKAGE for a host program that the Makefile, the code, the tests, the
# bench or a host script runs, py:MODULE=PACKAGE for a Python module the tests import,
# lib:NAME=PACKAGE for a library the build links, cgo:NAME=PACKAGE for what cgo runs,
# via:TOOL:PROGRAM=PACKAGE for a program that a tool we run runs in turn (lxc-copy copies a
# dir-backed rootfs with rsync; lxc only recommends it). `toolchain` is the Go toolchain in
# /usr/local/go; `make-criu` is CRIU as `make criu` builds it (part of make deps; lib:criu-*
# and via:make: rows are what that build links and runs); Debian's
# Essential packages (coreutils, util-linux, ...) are on every Debian system. integration/deps_test.go (part of `make test`) checks the table both ways against
# every program the repository runs, and that each program on PATH comes from its package.
DEB_BUILD := gcc libc6-dev musl-tools libseccomp-dev pkgconf make git zstd mawk apt curl xz-utils
DEB_CRIU  := libbsd-dev libcap-dev libnet1-dev libnftables-dev libnl-3-dev \
	libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler protobuf-compiler uuid-dev
DEB_TEST  := busybox-static debootstrap e2fsprogs iproute2 nftables tmux mount \
	iputils-ping iputils-arping python3-minimal python3-scapy iptables rsync openssh-client \
	openssh-server libvirt-clients gpg gpg-agent gpgv gpgconf strace
DEB_VM    := qemu-system-x86
DEB_BENCH := runc crun lxc lxcfs systemd-container iperf3 gnuplot-nox
DEB_ALL   := $(DEB_BUILD) $(DEB_CRIU) $(DEB_TEST) $(DEB_VM) $(DEB_BENCH)
PROVIDES  := go=toolchain gofmt=toolchain cgo:gcc=gcc lib:libc=libc6-dev musl-gcc=musl-tools lib:musl=musl-tools lib:libseccomp=libseccomp-dev \
	lib:pkg-config=pkgconf pkg-config=pkgconf make=make git=git zstd=zstd awk=mawk apt-get=apt curl=curl \
	busybox=busybox-static debootstrap=debootstrap mke2fs=e2fsprogs mkfs.ext4=e2fsprogs \
	resize2fs=e2fsprogs e2fsck=e2fsprogs debugfs=e2fsprogs ip=iproute2 nft=nftables tmux=tmux \
	umount=mount losetup=mount ping=iputils-ping arping=iputils-arping python3=python3-minimal \
	py:scapy=python3-scapy qemu-system-x86_64=qemu-system-x86 runc=runc crun=crun \
	lxc-start=lxc lxc-stop=lxc lxc-attach=lxc lxc-execute=lxc lxc-copy=lxc lxc-info=lxc lxc-cgroup=lxc \
	systemd-nspawn=systemd-container lxcfs=lxcfs iperf3=iperf3 gnuplot=gnuplot-nox via:lxc-copy:rsync=rsync \
	rsync=rsync virsh=libvirt-clients gpg=gpg gpgv=gpgv gpgconf=gpgconf via:gpg:gpg-agent=gpg-agent gcc=gcc ssh=openssh-client ssh-keygen=openssh-client sshd=openssh-server strace=strace \
	cat=coreutils chmod=coreutils chroot=coreutils cp=coreutils cut=coreutils date=coreutils dirname=coreutils \
	dd=coreutils du=coreutils head=coreutils md5sum=coreutils id=coreutils install=coreutils ln=coreutils ls=coreutils \
	mkdir=coreutils mktemp=coreutils mv=coreutils pwd=coreutils realpath=coreutils rm=coreutils \
	sha256sum=coreutils nproc=coreutils sleep=coreutils sort=coreutils stat=coreutils tail=coreutils tr=coreutils \
	bash=bash sh=dash find=findutils grep=grep sed=sed tar=tar flock=util-linux \
	nsenter=util-linux unshare=util-linux ldd=libc-bin dpkg-query=dpkg dpkg-deb=dpkg criu=make-criu via:tar:xz=xz-utils \
	lib:criu-bsd=libbsd-dev lib:criu-cap=libcap-dev lib:criu-net=libnet1-dev \
	lib:criu-nftables=libnftables-dev lib:criu-nl=libnl-3-dev lib:criu-protobuf-c=libprotobuf-c-dev \
	lib:criu-protobuf=libprotobuf-dev lib:criu-uuid=uuid-dev via:make:protoc-c=protobuf-c-compiler \
	via:make:protoc=protobuf-compiler \
	via:criu:iptables-restore=iptables

.PHONY: all test lint check fuzz integration install man clean deps demo FORCE

all: bin/vectl

# The C library. bin/vectl and the idle loop's program link musl (Debian's musl-tools), not
# glibc: a static glibc program probes the CPU's features and caches when it starts
# (init_cpu_features, init_cacheinfo: several dozen cpuid instructions, each a VM exit on a
# virtual machine), about 0.5 ms of CPU per process on the development VM, and a start runs
# four such processes (the command, libcontainer's init, the init wrapper, the idle loop), an
# exec two. musl probes nothing. musl-gcc sees only musl's own headers: the kernel's (linux/,
# asm/, asm-generic/) and libseccomp's come from a directory of links, and Debian's
# libseccomp.a through a pkg-config file of its own (container/libccompat/libccompat.c supplies
# the one glibc symbol it refers to). A plain `go build` still links glibc and works the same.
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
MUSL      := $(CURDIR)/bin/musl
MUSL_CC   := musl-gcc
MUSL_PC   := $(MUSL)/lib/pkgconfig/libseccomp.pc
MUSL_ENV  := CC=$(MUSL_CC) PKG_CONFIG_PATH=$(MUSL)/lib/pkgconfig CGO_CFLAGS='-O2 -g -idirafter $(MUSL)/include'
$(MUSL_PC): Makefile
	@command -v $(MUSL_CC) >/dev/null || { echo "$(MUSL_CC) not found: run make deps (Debian package musl-tools)" >&2; exit 1; }
	rm -rf $(MUSL) && mkdir -p $(MUSL)/include $(MUSL)/lib/pkgconfig
	ln -s /usr/include/linux /usr/include/asm-generic /usr/include/seccomp.h /usr/include/seccomp-syscalls.h $(MUSL)/include/
	ln -s /usr/include/$(MULTIARCH)/asm $(MUSL)/include/asm
	ln -s /usr/lib/$(MULTIARCH)/libseccomp.a $(MUSL)/lib/
	printf '%s\n' 'libdir=$(MUSL)/lib' 'includedir=$(MUSL)/include' 'Name: libseccomp' \
		"Description: Debian's libseccomp.a for vectl's musl link" \
		"Version: $$(pkg-config --modversion libseccomp)" 'Cflags: -I$${includedir}' \
		'Libs: -L$${libdir} -lseccomp' > $@.tmp
	mv $@.tmp $@

# The idle loop as a program of its own (container/idle/helper), embedded in bin/vectl by
# package idle: a resting monitor executes it instead of vectl, so that it maps this small
# binary's pages and not the 20 MB one's. Static, like vectl, from the same C sources the
# Go monitor links; a file with its sha256 names the directory it is extracted to. Without
# it (a plain go build), a monitor rests in vectl's own binary as before. It also holds the
# init wrapper and exec's joiner (container/nsjoin/nsjoin.c), which a VE's init and vectl exec
# then run from a sealed copy of this small program instead of vectl's (package join).
IDLE_HELPER  := container/idle/bin/vectl-idle
IDLE_SOURCES := container/idle/idle.c container/idle/views.c container/idle/layout.c container/idle/helper/main.c \
	container/nsjoin/nsjoin.c container/nsjoin/proto.h $(wildcard container/idle/*.h) container/wire/wire.h
$(IDLE_HELPER) $(IDLE_HELPER).sha256 &: $(IDLE_SOURCES) $(MUSL_PC)
	$(MUSL_CC) -static -Os -s -Wall -Werror -pthread -I container/wire -I container/nsjoin -idirafter $(MUSL)/include -o $(IDLE_HELPER).tmp \
		container/idle/idle.c container/idle/views.c container/idle/layout.c container/nsjoin/nsjoin.c container/idle/helper/main.c
	echo "$$(sha256sum < $(IDLE_HELPER).tmp | cut -c1-64) $$(stat -c %s $(IDLE_HELPER).tmp)" > $(IDLE_HELPER).sha256.tmp
	mv $(IDLE_HELPER).sha256.tmp $(IDLE_HELPER).sha256
	mv $(IDLE_HELPER).tmp $(IDLE_HELPER)

# libcontainer's init as a program of its own (container/lcinit/helper), embedded in bin/vectl
# compressed by package lcinit: a VE's first process executes it in place of vectl's binary,
# so that its Go runtime initialises libcontainer's packages only (see container/lcinit).
# Built like bin/vectl at every make (go's cache keeps it quick); the embedded files are
# replaced only when the program changed, so that bin/vectl's inputs stay the same otherwise.
LCINIT_HELPER := container/lcinit/bin/vectl-init
.PHONY: lcinit
lcinit: $(MUSL_PC)
	$(MUSL_ENV) CGO_ENABLED=1 GOEXPERIMENT=$(GOEXP) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '-s -w -linkmode external -extldflags "$(EXTLDFLAGS)"' -o bin/vectl-init ./container/lcinit/helper
	@ldd bin/vectl-init 2>&1 | grep -qE 'statically linked|not a dynamic executable' || { echo "bin/vectl-init is not static:"; ldd bin/vectl-init; exit 1; }
	@sum="$$(sha256sum < bin/vectl-init | cut -c1-64) $$(stat -c %s bin/vectl-init)"; \
	if [ "$$sum" != "$$(cat $(LCINIT_HELPER).sha256 2>/dev/null)" ] || [ ! -s $(LCINIT_HELPER).zst ]; then \
		zstd -19 -q -f bin/vectl-init -o $(LCINIT_HELPER).zst.tmp && mv $(LCINIT_HELPER).zst.tmp $(LCINIT_HELPER).zst && \
		echo "$$sum" > $(LCINIT_HELPER).sha256; \
	fi

bin/vectl: plugins lcinit $(IDLE_HELPER) $(MUSL_PC) FORCE
	$(MUSL_ENV) CGO_ENABLED=1 GOEXPERIMENT=$(GOEXP) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $@ .
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

# Static like vectl and linked the same way, with musl, container/prefault's mmap wrapper and
# container/slack's pthread_create wrapper (thp.c and slack.c, built on their own here: the
# plugins are upstream's programs), so that a plugin's Go heap is in huge pages and its sysmon
# slow too; -linkmode external links the runtime's cgo part, which maps
# memory through the C library. The plugins call no C otherwise (netgo, osusergo).
THP_OBJ := bin/thp.o
THP_SOURCES := container/prefault/thp.c container/prefault/thp.h container/wire/cmdline.h container/wire/mainargs.h
SLACK_OBJ := bin/slack.o
SLACK_SOURCES := container/slack/slack.c container/slack/slack.h
$(SLACK_OBJ): $(SLACK_SOURCES)
	@command -v $(MUSL_CC) >/dev/null || { echo "$(MUSL_CC) not found: run make deps (Debian package musl-tools)" >&2; exit 1; }
	@mkdir -p bin
	$(MUSL_CC) -O2 -Wall -Werror -c -o $@ container/slack/slack.c

$(THP_OBJ): $(THP_SOURCES)
	@command -v $(MUSL_CC) >/dev/null || { echo "$(MUSL_CC) not found: run make deps (Debian package musl-tools)" >&2; exit 1; }
	@mkdir -p bin
	$(MUSL_CC) -O2 -Wall -Werror -I container/wire -c -o $@ container/prefault/thp.c

$(CNI_OUT) &: network/cnitools/go.mod network/cnitools/go.sum $(THP_OBJ) $(SLACK_OBJ)
	@test -n "$(CNI_VERSION)" || { echo "no containernetworking/plugins version in network/cnitools/go.mod"; exit 1; }
	rm -rf bin/cni-plugins $(CNI_BIN)/*.zst $(CNI_BIN)/VERSION $(CNI_BIN)/MANIFEST
	cd network/cnitools && CC=$(MUSL_CC) CGO_ENABLED=1 $(GO) build -trimpath -tags netgo,osusergo \
		-ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(CNI_VERSION) -linkmode external -extldflags '$(EXTLDFLAGS) $(CURDIR)/$(THP_OBJ) $(CURDIR)/$(SLACK_OBJ)'" \
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
	GOEXPERIMENT=$(GOEXP) $(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags 'integration vmtest $(TAGS)' ./integration/...
	$(GO) run $(STATICCHECK) -tags '$(TAGS)' ./...
	$(GO) run $(STATICCHECK) -tags 'integration vmtest $(TAGS)' ./integration/...
	@bad=$$($(GO) list -f '{{join .Imports "\n"}}' ./commands/... | \
		grep -E 'opencontainers/runc/libcontainer|containernetworking/cni/libcni|vishvananda/netlink' || true); \
		if [ -n "$$bad" ]; then echo "commands/ must not import: $$bad"; exit 1; fi
	@# The leaf packages under container/ (idmap, layout, revert, store, wire, helperbin, libccompat, prefault, slack) own
	@# one concern each: they import neither the VE domain nor the runtime, the network or each other's users.
	@bad=$$($(GO) list -f '{{.ImportPath}}: {{join .Imports " "}}' ./container/idmap ./container/layout ./container/revert ./container/store ./container/wire ./container/helperbin ./container/libccompat ./container/prefault ./container/slack | \
		grep -E 'vectl/container( |$$)|opencontainers/runc/libcontainer|containernetworking|vishvananda/netlink|vectl/network' || true); \
		if [ -n "$$bad" ]; then echo "a leaf package under container/ imports what it must not: $$bad"; exit 1; fi
	@# The monitor (supervisor, console) and join (exec into a running VE) are driven by the VE
	@# domain, never the other way round; neither knows the network or another's job.
	@bad=$$($(GO) list -f '{{.ImportPath}}: {{join .Imports " "}}' ./container/monitor ./container/join | \
		grep -E 'vectl/container( |$$)|vectl/container/(monitor|join|layout)( |$$)|containernetworking|vishvananda/netlink|vectl/network|vectl/template|vectl/resources' || true); \
		if [ -n "$$bad" ]; then echo "container/monitor or container/join imports what it must not: $$bad"; exit 1; fi

# Unit and integration tests; integration needs root and real namespaces.
check: bin/vectl test fuzz integration

# The fuzz targets of every parser of untrusted input, each run for FUZZTIME (package:target).
# What the fuzzer finds lands in the package's testdata/fuzz and stays as a regression seed,
# run by every `make test`.
FUZZTIME ?= 10s
FUZZ := commands:FuzzVzctlArgs commands:FuzzVzlistArgs commands:FuzzVectlArgs commands:FuzzGetoptLong \
	commands:FuzzVzctlValues resources:FuzzLimitsSet resources:FuzzParseSize resources:FuzzParseUBC \
	resources:FuzzProfile network:FuzzConfig network:FuzzParseAddr container:FuzzVZConf \
	container:FuzzConfigJSON container:FuzzNetIf template:FuzzDetectFormat template:FuzzCleanName \
	template:FuzzExtract

fuzz:
	@for t in $(FUZZ); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		GOEXPERIMENT=$(GOEXP) .ci/fuzz "$(GO)" $$pkg $$name $(FUZZTIME) || exit 1; \
	done

integration: bin/vectl
	VECTL_BIN=$(CURDIR)/bin/vectl $(GO) test -tags integration -count=1 -timeout 80m -v ./integration/...

# A subset of the integration suite in a Debian 12 VM with systemd as PID 1 and cgroup v2,
# with the fs and the systemd cgroup driver (qemu TCG, no network device), as root. About 13.5
# minutes, plus about 2 the first time to build the VM image (cached in
# /var/cache/vectl-test/vm). See integration/vm/README.md.
.PHONY: vm-test
vm-test: bin/vectl
	VECTL_BIN=$(CURDIR)/bin/vectl bash integration/vm/vm-test.sh

# Benchmarks against runc, crun, LXC and systemd-nspawn, as root (make deps installs them; about 15
# minutes; not part of .ci/run). Writes integration/bench/results/: results.md, results.json,
# chart.png and README-section.md. BENCHFLAGS=-quick for a smoke run. LOAD=1 runs them with
# every CPU busy with background work and writes integration/bench/results/loaded/.
BENCHOUT := $(CURDIR)/integration/bench/results$(if $(LOAD),/loaded)
.PHONY: bench bench-check
bench: deps bin/vectl
	mkdir -p $(BENCHOUT)
	$(GO) run ./integration/bench -vectl $(CURDIR)/bin/vectl -out $(BENCHOUT) $(if $(LOAD),-load) $(BENCHFLAGS)

# Compares the CPU time of a new results.json (NEW, default the working tree's) with the
# committed one (OLD, default HEAD's) and names every row that grew by more than 10%; one
# whose CPU ratio to its peer held (the machine was slower) does not fail it.
NEW ?= $(BENCHOUT)/results.json
OLD ?= HEAD:$(patsubst $(CURDIR)/%,%,$(BENCHOUT))/results.json
bench-check:
	@tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	case "$(OLD)" in *:*) git show "$(OLD)" >"$$tmp" || exit 2;; *) cp "$(OLD)" "$$tmp" || exit 2;; esac && \
	$(GO) run ./integration/bench -check $(NEW) -against "$$tmp"

# vectl answers to the names vzctl and vzlist with their command lines (the personalities;
# see README's "vzctl and vzlist" section): the links are part of the install.
# Man pages and completion scripts are generated from the command definitions by the binary
# just built, so they always match it.
PROGS := vectl vzctl vzlist
man: bin/vectl
	@mkdir -p bin/man bin/completion
	@for p in $(PROGS); do \
		bin/vectl man $$p > bin/man/$$p.8 && \
		bin/vectl completion bash --prog $$p > bin/completion/$$p.bash && \
		bin/vectl completion zsh --prog $$p > bin/completion/$$p.zsh && \
		bin/vectl completion fish --prog $$p > bin/completion/$$p.fish || exit 1; \
	done

install: bin/vectl man
	install -D -m 0755 bin/vectl $(DESTDIR)$(PREFIX)/sbin/vectl
	ln -sf vectl $(DESTDIR)$(PREFIX)/sbin/vzctl
	ln -sf vectl $(DESTDIR)$(PREFIX)/sbin/vzlist
	for p in $(PROGS); do \
		install -D -m 0644 bin/man/$$p.8 $(DESTDIR)$(PREFIX)/share/man/man8/$$p.8 && \
		install -D -m 0644 bin/completion/$$p.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p && \
		install -D -m 0644 bin/completion/$$p.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$p.fish && \
		install -D -m 0644 bin/completion/$$p.zsh $(DESTDIR)$(PREFIX)/share/vectl/completion/$$p.zsh || exit 1; \
	done
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/vectl/README.md

clean:
	rm -rf bin
	rm -f $(CNI_BIN)/*.zst $(CNI_BIN)/VERSION $(CNI_BIN)/MANIFEST
	rm -f $(IDLE_HELPER) $(IDLE_HELPER).sha256 $(LCINIT_HELPER).zst $(LCINIT_HELPER).sha256

# Installs every package of the lists above on a Debian 12 machine (as root), and the Go
# modules; nothing when they are there. No service starts during the install: lxc's would
# bring up its own bridge with NAT, which is not vectl's to make.
deps:
	@missing=""; for p in $(DEB_ALL); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		policy=/usr/sbin/policy-rc.d; ours=""; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\n# vectl make deps: no service starts during its install\nexit 101\n' > $$policy && chmod 755 $$policy && ours=1; fi; \
		apt-get -o DPkg::Lock::Timeout=600 update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $$missing; \
		rc=$$?; [ -z "$$ours" ] || rm -f $$policy; exit $$rc; \
	fi
	$(GO) mod download
	cd network/cnitools && $(GO) mod download
	@$(MAKE) --no-print-directory criu

# CRIU for checkpoint, restore and migration. Debian 12's criu 3.17 fails on current kernels
# (vDSO); 4.1.1 (Debian 13) cannot dump a TCP or UDP socket on Linux >= 6.16 (it asks every
# socket for SO_PASSCRED, which the kernel now refuses; fixed in 4.2); and 4.2.1 cannot
# restore a file bind mount in a nested mount namespace (systemd's PrivateTmp= and the like
# make them), nor serve lazy pages (post-copy) without CAP_SYS_RESOURCE, both fixed by
# container/criupatch. So `make criu` builds criu $(CRIU_VERSION) from
# Debian's source (the orig tarball of the testing suite, checked against its sha256) with
# those patches, natively against this Debian's libraries (DEB_CRIU), and installs the binary
# as $(CRIU_DIR)/criu, which vectl uses; nothing else on the host changes. The build (about a
# minute) is cached in /var/cache/vectl-criu, keyed by version, patches and build options; nothing is done
# when that build is installed.
CRIU_VERSION := 4.2.1
CRIU_SUM  := 29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_PATCHES := $(sort $(wildcard container/criupatch/*.patch))
CRIU_DIR     := /usr/local/lib/vectl/criu
CRIU_MIRROR  ?= http://deb.debian.org/debian
# Without GnuTLS (the page server's TLS, which vectl does not use: post-copy pages go over
# ssh): eight shared libraries fewer to load at every criu start, 3 ms of each here, and one
# of them is in a dump's frozen time.
CRIU_BUILD   := NO_GNUTLS=1
.PHONY: criu
criu:
	@key=$(CRIU_VERSION)-$$( { cat $(CRIU_PATCHES); echo '$(CRIU_BUILD)'; } | sha256sum | cut -c1-12); \
	if [ "$$(cat $(CRIU_DIR)/VERSION 2>/dev/null)" = "$$key" ] && $(CRIU_DIR)/criu --version >/dev/null 2>&1; then exit 0; fi; \
	set -e; c=/var/cache/vectl-criu/$$key; \
	if [ ! -x $$c/criu ]; then \
		echo "criu: building criu $(CRIU_VERSION) with $(notdir $(CRIU_PATCHES)) (about a minute)"; \
		rm -rf $$c.build; mkdir -p $$c.build; \
		curl -fsS -o $$c.build/src.tar.xz $(CRIU_MIRROR)/pool/main/c/criu/criu_$(CRIU_VERSION).orig.tar.xz; \
		echo "$(CRIU_SUM)  $$c.build/src.tar.xz" | sha256sum -c --quiet; \
		tar -xJf $$c.build/src.tar.xz -C $$c.build; \
		for p in $(abspath $(CRIU_PATCHES)); do git -C $$c.build/criu-$(CRIU_VERSION) apply -p1 $$p; done; \
		$(MAKE) -s -C $$c.build/criu-$(CRIU_VERSION) -j$$(nproc) $(CRIU_BUILD) criu >$$c.build/build.log 2>&1 || { tail -n 20 $$c.build/build.log; exit 1; }; \
		mkdir -p $$c; install -m 0755 $$c.build/criu-$(CRIU_VERSION)/criu/criu $$c/criu.new; mv $$c/criu.new $$c/criu; \
		rm -rf $$c.build; \
	fi; \
	rm -rf $(CRIU_DIR).new; mkdir -p $(CRIU_DIR).new; \
	cp $$c/criu $(CRIU_DIR).new/criu; echo $$key > $(CRIU_DIR).new/VERSION; \
	rm -rf $(CRIU_DIR); mv $(CRIU_DIR).new $(CRIU_DIR); \
	$(CRIU_DIR)/criu --version | grep -qx "Version: $(CRIU_VERSION)" || { echo "criu: $(CRIU_DIR)/criu does not run"; exit 1; }; \
	echo "criu $$key in $(CRIU_DIR) ($$($(CRIU_DIR)/criu check 2>&1 | tail -n 1))"

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
