#!/bin/bash
# make vm-test: runs a subset of vectl's integration suite inside a Debian 12 VM whose PID 1
# is systemd and whose cgroups are v2 only, once with the fs cgroup driver and once with the
# systemd driver. See integration/vm/README.md.
#
# The VM: Debian's kernel (linux-image-amd64) under qemu-system-x86_64 -accel tcg, no network
# device at all (-nic none), the root disk a debootstrap'd image booted with snapshot=on
# (never modified), and a payload disk made for this run (vectl, the test binary, the
# fixtures, run-in-vm.sh). Results come back through the serial console.
#
# Environment:
#   VECTL_BIN         vectl binary to test (default: bin/vectl, which make vm-test builds)
#   VMTEST_RUN        go test -run pattern for every driver (default: each driver's subset below)
#   VMTEST_SKIP       go test -skip pattern (default: the Debian half of TestLifecycle)
#   VMTEST_DRIVERS    cgroup drivers to run (default: "fs systemd")
#   VMTEST_TIMEOUT    seconds before the VM is killed (default 3600)
#   VMTEST_CACHE      cache directory (default /var/cache/vectl-test/vm)
#   VMTEST_MIRROR     Debian mirror for the root image (default http://deb.debian.org/debian)
#   VMTEST_KEEP       keep the run directory (payload image, logs) when set
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

# The subset (integration/vm/README.md says why each test is in or out): what differs on a
# cgroup v2 + systemd host (cgroups and their limits, the monitor, systemd guests, teardown
# after faults, the unit and boot commands) plus the network basics. The tests that depend on
# the cgroup driver run with both; the others with one only: the other distributions' systemd
# guests with the systemd driver (what a systemd host uses), the address tests with fs (the
# CI time goal).
both='TestLifecycle|TestBusyboxRun|TestForeground|TestNoMonitor|TestFreezeThaw|TestIsolation|'\
'TestKillMonitor|TestKillDuringStart|TestDebianSystemd|'\
'TestResourceMemoryOOM|TestResourceForkBomb|TestResourceStats|TestResourceImageDisk|'\
'TestNetworkTeardownLeavesNothing|'\
'TestSystemdUnit|TestBootOnboot|TestCgroupV2Delegation|TestCgroupManagerConfigFile|'\
'TestUserNSBusybox|TestUserNSDebianSystemd|TestUserNSEscapes|TestUserNSNested|TestProcViews'
default_run_fs="^($both|TestNetworkRoutedAddresses|TestNetworkLiveSet|TestTimeNamespace|TestViewsCloser)\$"
default_run_systemd="^($both|TestDistroMatrix|TestDebian13)\$"
default_skip='^TestLifecycle$/^debian$'

# VMTEST_RUN, when set, is every driver's pattern; otherwise each driver has its own.
VMTEST_RUN=${VMTEST_RUN:-}
VMTEST_RUN_fs=${VMTEST_RUN:-$default_run_fs}
VMTEST_RUN_systemd=${VMTEST_RUN:-$default_run_systemd}
VMTEST_SKIP=${VMTEST_SKIP-$default_skip}
VMTEST_DRIVERS=${VMTEST_DRIVERS:-fs systemd}
VMTEST_TIMEOUT=${VMTEST_TIMEOUT:-3600}
cache=${VMTEST_CACHE:-/var/cache/vectl-test/vm}
mirror=${VMTEST_MIRROR:-http://deb.debian.org/debian}
vectl=${VECTL_BIN:-$repo/bin/vectl}
export PATH="/usr/local/go/bin:$PATH"

log() { echo "vm-test: $*" >&2; }
die() {
	log "$*"
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, the integration fixtures)"
[ -x "$vectl" ] || die "$vectl missing: run make first"
t0=$(date +%s)

# Host tools, installed only when missing.
need=()
for p in qemu-system-x86:qemu-system-x86_64 debootstrap:debootstrap e2fsprogs:mke2fs zstd:zstd e2fsprogs:debugfs; do
	command -v "${p#*:}" >/dev/null || need+=("${p%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
		$(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

# The root image, kernel and initramfs: built once per version of build-rootfs.sh.
key=$(sha256sum "$here/build-rootfs.sh" | cut -c1-16)
img="$cache/rootfs-$key"
mkdir -p "$cache"
if [ ! -f "$img/root.img" ]; then
	log "building the VM root image (debootstrap; a few minutes) into $img"
	# Older images of other keys go.
	for old in "$cache"/rootfs-*; do
		[ "$old" != "$img" ] && [ -d "$old" ] && rm -rf "$old"
	done
	(exec 9>"$cache/.build.lock" && flock 9 && { [ -f "$img/root.img" ] || bash "$here/build-rootfs.sh" "$img" "$mirror"; })
fi
t_image=$(date +%s)

# Each run keeps its logs (a few hundred KB) in /var/tmp/vectl-vmtest.*; a week is enough.
find /var/tmp -maxdepth 1 -name 'vectl-vmtest.*' -type d -mtime +7 -exec rm -rf {} + 2>/dev/null || true
run=$(mktemp -d /var/tmp/vectl-vmtest.XXXXXX)
payload="$run/payload"
mkdir -p "$payload"
keep=${VMTEST_KEEP:-}
qemu_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
	if [ -z "$keep" ]; then
		rm -rf "$payload" "$run/payload.img" "$run/fixture"
	fi
}
trap cleanup EXIT

# The payload: vectl, the integration test binary, the fixture archives, the in-VM script.
log "building the payload"
cp "$vectl" "$payload/vectl"
(cd "$repo" && CGO_ENABLED=0 go test -c -tags 'integration vmtest' -o "$payload/vmtest" ./integration)
(cd "$repo" && CGO_ENABLED=0 go build -o "$payload/escape" ./integration/testdata/escape)
"$vectl" --root "$run/fixture/root" --run-dir "$run/fixture/run" --log-dir "$run/fixture/log" \
	template build busybox-1.35-x86_64 --from busybox >/dev/null
cp "$run/fixture/root/templates/busybox-1.35-x86_64.tar.zst" "$payload/"
debian=$(ls -t /var/cache/vectl-test/debian-12-x86_64-minimal-*.tar.zst 2>/dev/null | head -n 1 || true)
if [ -z "$debian" ]; then
	log "no cached Debian template: building it with the host's integration fixture (a few minutes)"
	(cd "$repo" && VECTL_BIN="$vectl" go test -tags integration -count=1 -run '^TestDebianTemplateContent$' ./integration >/dev/null)
	debian=$(ls -t /var/cache/vectl-test/debian-12-x86_64-minimal-*.tar.zst | head -n 1)
fi
cp "$debian" "$payload/debian-12-x86_64-minimal.tar.zst"
# The other systemd distributions of the matrix (TestDistroMatrix's fixtures, cached).
for d in debian-13-x86_64-minimal:trixie debian-11-x86_64-minimal:bullseye; do
	name=${d%%:*}
	f=$(ls -t /var/cache/vectl-test/"$name"-*.tar.zst 2>/dev/null | head -n 1 || true)
	if [ -z "$f" ]; then
		log "no cached $name template: building it with the host's integration fixture"
		(cd "$repo" && VECTL_BIN="$vectl" go test -tags integration -count=1 -run "^TestDistroMatrix\$/^${d#*:}-systemd\$" ./integration >/dev/null)
		f=$(ls -t /var/cache/vectl-test/"$name"-*.tar.zst | head -n 1)
	fi
	cp "$f" "$payload/$name.tar.zst"
done
install -m 0755 "$here/run-in-vm.sh" "$payload/run-in-vm.sh"
{
	printf 'VMTEST_RUN_fs=%q\n' "$VMTEST_RUN_fs"
	printf 'VMTEST_RUN_systemd=%q\n' "$VMTEST_RUN_systemd"
	printf 'VMTEST_SKIP=%q\n' "$VMTEST_SKIP"
	printf 'VMTEST_DRIVERS=%q\n' "$VMTEST_DRIVERS"
} >"$payload/vmtest.env"
mkdir -p "$payload/results"
mb=$(( $(du -sm "$payload" | cut -f1) + 128 ))
mke2fs -q -t ext4 -L payload -d "$payload" "$run/payload.img" "${mb}M" >/dev/null
rm -rf "$payload" "$run/fixture"
t_payload=$(date +%s)

# The VM. TCG (KVM did not boot here), no network device, serial console to a file.
serial="$run/serial.log"
log "booting the VM (serial log: $serial)"
qemu-system-x86_64 -accel tcg -cpu max -m 3072 -smp 2 \
	-nographic -monitor none -serial "file:$serial" -nic none -no-reboot \
	-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=10 loglevel=4 systemd.show_status=error" \
	-drive "file=$img/root.img,if=virtio,format=raw,snapshot=on" \
	-drive "file=$run/payload.img,if=virtio,format=raw" \
	</dev/null >"$run/qemu.log" 2>&1 &
qemu_pid=$!
# Progress: the markers as they arrive.
tail -n +1 -F --pid=$qemu_pid "$serial" 2>/dev/null | grep --line-buffered -E '^VMTEST (BOOTED|ENV|ERROR|BEGIN|LINE|RESULT|LEFTOVER)' &
tail_pid=$!
timed_out=
for ((i = 0; i < VMTEST_TIMEOUT; i++)); do
	kill -0 $qemu_pid 2>/dev/null || break
	sleep 1
done
if kill -0 $qemu_pid 2>/dev/null; then
	timed_out=1
	log "timeout after ${VMTEST_TIMEOUT}s: killing the VM"
	kill $qemu_pid
fi
wait $qemu_pid 2>/dev/null || true
qemu_pid=
wait $tail_pid 2>/dev/null || true
t_vm=$(date +%s)

# The full go test logs, journal and dmesg, read out of the payload image (not mounted).
results="$run/results"
mkdir -p "$results"
for f in $VMTEST_DRIVERS journal dmesg; do
	debugfs -R "dump /results/$f.log $results/$f.log" "$run/payload.img" >/dev/null 2>&1 || true
done
rm -f "$run/payload.img"

# The verdict: every driver must have reported PASS.
tr -d '\r' <"$serial" >"$serial.tmp" && mv "$serial.tmp" "$serial"
ok=1
echo
echo "=== vm-test summary"
for d in $VMTEST_DRIVERS; do
	r=$(grep -aE "^VMTEST RESULT $d " "$serial" | tail -n 1 | cut -d' ' -f4- || true)
	echo "driver $d: ${r:-NO RESULT}"
	case $r in PASS*) ;; *) ok=0 ;; esac
done
# Per-test lines per driver.
awk '/^VMTEST BEGIN /{d=$3} /^VMTEST LINE --- (PASS|FAIL|SKIP)/{sub(/^VMTEST LINE /,""); print "  [" d "] " $0}' "$serial"
[ -n "$timed_out" ] && { echo "the VM timed out after ${VMTEST_TIMEOUT}s"; ok=0; }
grep -aq '^VMTEST DONE' "$serial" || { echo "the VM did not finish its run (no VMTEST DONE)"; ok=0; }
echo "times: image $((t_image - t0))s, payload $((t_payload - t_image))s, VM $((t_vm - t_payload))s, total $((t_vm - t0))s"
echo "serial log: $serial"
echo "go test logs: $results/"
if [ $ok = 1 ]; then
	echo "vm-test: PASS"
	exit 0
fi
echo "vm-test: FAIL"
exit 1
