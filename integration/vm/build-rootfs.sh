#!/bin/bash
# Builds the test VM's root filesystem image, kernel and initramfs into OUTDIR:
#   OUTDIR/root.img    ext4 image (made with mke2fs -d, nothing is mounted on the host)
#   OUTDIR/vmlinuz     Debian's kernel (linux-image-amd64)
#   OUTDIR/initrd.img  its initramfs (initramfs-tools, with virtio and ext4)
# Debian bookworm by debootstrap (minbase), systemd as PID 1, configured as a serial-console
# test machine: no getty, no network device, and vectl-vmtest.service running
# /payload/run-in-vm.sh (from the payload disk /dev/vdb) once the system is up.
#
# vm-test.sh caches the result keyed by a hash of this file: change anything here (the
# package list included) and the next run rebuilds the image.
#
# usage: build-rootfs.sh OUTDIR [MIRROR]
set -euo pipefail

out=${1:?usage: build-rootfs.sh OUTDIR [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
suite=bookworm
size=4G

# What the VM needs to run vectl and its integration tests under cgroup v2 with systemd.
# dbus: libcontainer's systemd cgroup driver talks to systemd through the system bus.
packages=(
	systemd-sysv udev kmod dbus linux-image-amd64 initramfs-tools zstd
	iproute2 nftables iptables e2fsprogs busybox-static procps util-linux iputils-ping
	ca-certificates
)

log() { echo "build-rootfs: $*" >&2; }

mkdir -p "$out"
work=$(mktemp -d "$out/build.XXXXXX")
root="$work/root"
cleanup() {
	# debootstrap unmounts what it mounted; a killed one may leave /proc or /sys in the tree.
	# Never delete through a mount.
	local m
	for m in $(awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do
		umount -l "$m" || true
	done
	if awk -v r="$root" '$2 == r || index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
		log "mounts left under $root; not removing $work"
		return
	fi
	rm -rf "$work"
}
trap cleanup EXIT

debs="$out/../debs"
mkdir -p "$debs"
log "debootstrap $suite (${packages[*]})"
DEBIAN_FRONTEND=noninteractive LC_ALL=C debootstrap --variant=minbase --cache-dir="$(realpath "$debs")" \
	--include="$(IFS=,; echo "${packages[*]}")" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	exit 1
}

log "configuring"
echo vmtest >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvmtest\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cat >"$root/etc/fstab" <<'EOF'
/dev/vda  /         ext4  rw,errors=remount-ro  0 1
/dev/vdb  /payload  ext4  rw,nofail,x-systemd.device-timeout=30s  0 2
EOF
mkdir -p "$root/payload"
: >"$root/etc/resolv.conf"
# A fixed machine id: the image is booted with snapshot=on, so every boot starts from it.
echo 5ec7e57b00000000000000000000000a >"$root/etc/machine-id"
printf 'LANG=C.UTF-8\n' >"$root/etc/default/locale"

# Nothing logs in: no gettys (the serial console carries the test output). No timers that
# would start work during the tests.
for u in getty@tty1.service serial-getty@ttyS0.service console-getty.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
	fstrim.timer systemd-tmpfiles-clean.timer dpkg-db-backup.timer; do
	ln -sf /dev/null "$root/etc/systemd/system/$u"
done
# The journal stays in memory (the root disk is a throw-away snapshot anyway) and does not
# copy everything to the serial console.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$root/etc/systemd/journald.conf.d/vmtest.conf"

cat >"$root/etc/systemd/system/vectl-vmtest.service" <<'EOF'
[Unit]
Description=vectl VM test run (/payload/run-in-vm.sh)
After=multi-user.target dbus.service
Wants=dbus.service
RequiresMountsFor=/payload
ConditionPathExists=/payload/run-in-vm.sh

[Service]
Type=simple
ExecStart=/bin/bash /payload/run-in-vm.sh
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
# The script powers the VM off when it is done; if it dies, power off anyway.
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/vectl-vmtest.service "$root/etc/systemd/system/multi-user.target.wants/vectl-vmtest.service"

# The initramfs must find the root disk: virtio block over PCI, and ext4.
printf 'virtio_pci\nvirtio_blk\next4\n' >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all >"$work/initramfs.log" 2>&1 || {
	tail -n 30 "$work/initramfs.log" >&2
	exit 1
}
rm -f "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages* 2>/dev/null || true
rm -rf "$root"/dev/* # devtmpfs provides /dev at boot

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"

log "making the root image ($size)"
mke2fs -q -t ext4 -L vmroot -d "$root" "$work/root.img" "$size" >/dev/null
mv "$work/root.img" "$work/vmlinuz" "$work/initrd.img" "$out/"
log "done: $out"
