#!/bin/bash
# Runs inside the test VM as root (vectl-vmtest.service, after boot), from the payload disk
# mounted on /payload. Its stdout is the serial console (ttyS0), which vm-test.sh parses:
#   VMTEST BEGIN <driver>            a driver's run starts
#   VMTEST LINE --- PASS: ... / --- FAIL: ... / ok / FAIL / panic lines of go test
#   VMTEST RESULT <driver> PASS|FAIL
#   VMTEST DONE
# Full go test output goes to /payload/results/<driver>.log (vm-test.sh copies it out).
# Settings come from /payload/vmtest.env (VMTEST_RUN_<driver>, VMTEST_SKIP, VMTEST_DRIVERS).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8 HOME=/root
cd /payload
. /payload/vmtest.env

say() { printf 'VMTEST %s\n' "$*"; }
finish() {
	say DONE
	sync
	systemctl poweroff --no-block
	exit 0
}

mkdir -p /payload/results /var/tmp/vmtest
say "BOOTED kernel $(uname -r) in $(cut -d' ' -f1 /proc/uptime)s"

# The point of the VM: cgroup v2 with systemd as PID 1.
fs=$(stat -fc %T /sys/fs/cgroup)
pid1=$(cat /proc/1/comm)
say "ENV cgroupfs=$fs pid1=$pid1 systemd=$(systemctl --version | head -n 1) controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
say "ENV cgroup2 mount: $(grep ' /sys/fs/cgroup ' /proc/self/mounts)"
if [ "$fs" != cgroup2fs ] || [ "$pid1" != systemd ]; then
	say "ERROR want cgroup2fs and systemd as PID 1, have $fs and $pid1"
	for d in $VMTEST_DRIVERS; do say "RESULT $d FAIL"; done
	finish
fi
if ! busctl --system status >/dev/null 2>&1; then
	say "ERROR the D-Bus system bus is not up: the systemd cgroup driver needs it"
fi

export CI=true
export VECTL_BIN=/payload/vectl
export VECTL_TEST_BUSYBOX=/payload/busybox-1.35-x86_64.tar.zst
export VECTL_TEST_DEBIAN=/payload/debian-12-x86_64-minimal.tar.zst
export VECTL_TEST_FIXTURES=/payload
# Of the distribution matrix, the systemd guests the payload brings (the other inits do not
# care about the host's cgroups; Debian 12 is TestDebianSystemd's guest already).
export VECTL_TEST_DISTROS=trixie-systemd,bullseye-systemd
export VECTL_TEST_ESCAPE=/payload/escape
export TMPDIR=/var/tmp/vmtest

for driver in $VMTEST_DRIVERS; do
	say "BEGIN $driver"
	start=$(date +%s)
	log=/payload/results/$driver.log
	run_var=VMTEST_RUN_$driver
	args=(-test.v -test.count=1 -test.timeout 60m -test.run "${!run_var}")
	[ -n "${VMTEST_SKIP:-}" ] && args+=(-test.skip "$VMTEST_SKIP")
	# The test binary resolves ../template paths from its working directory; only the
	# Debian fixture key uses them, and VECTL_TEST_DEBIAN bypasses that.
	VECTL_CGROUP_MANAGER=$driver /payload/vmtest "${args[@]}" >"$log" 2>&1
	rc=$?
	grep -E '^\s*--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)\b|^panic:|timed out' "$log" | sed 's/^/VMTEST LINE /'
	if [ $rc -ne 0 ]; then
		# The failing tests' own output, so that the serial log alone tells what broke.
		grep -B 40 -E '^\s*--- FAIL' "$log" | tail -n 200 | sed 's/^/VMTEST OUT /'
	fi
	# What a driver's run left behind (it must be nothing).
	left=$(find /sys/fs/cgroup/vectl /sys/fs/cgroup/vectl.slice -mindepth 1 -type d 2>/dev/null | head -n 20 | tr '\n' ' ')
	[ -n "$left" ] && say "LEFTOVER cgroups: $left"
	if [ $rc -eq 0 ]; then
		say "RESULT $driver PASS ($(($(date +%s) - start))s)"
	else
		say "RESULT $driver FAIL exit $rc ($(($(date +%s) - start))s)"
	fi
	sync
done
journalctl -b --no-pager -o short-monotonic >/payload/results/journal.log 2>&1
dmesg >/payload/results/dmesg.log 2>&1
finish
