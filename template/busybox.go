package template

import (
	"bytes"
	"context"
	"debug/elf"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// busyboxFiles are the configuration files of the busybox template, kept as plain files in
// busybox/ so that they can be read and edited as what they are.
//
//go:embed busybox
var busyboxFiles embed.FS

// busyboxDirs are the directories of the busybox template. /proc, /sys, /dev and /run are
// mount points for the runtime.
var busyboxDirs = []struct {
	path string
	mode uint32
}{
	{"bin", 0o755}, {"sbin", 0o755}, {"usr", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755},
	{"etc", 0o755}, {"etc/init.d", 0o755}, {"etc/rc.d", 0o755},
	{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755},
	{"tmp", 0o1777}, {"var", 0o755}, {"var/log", 0o755},
	{"root", 0o700}, {"home", 0o755}, {"mnt", 0o755},
}

// busyboxConfig maps the embedded files to their place and mode in the template.
var busyboxConfig = []struct {
	src, dst string
	mode     uint32
}{
	{"inittab", "etc/inittab", 0o644},
	{"rcS", "etc/init.d/rcS", 0o755},
	{"rcK", "etc/init.d/rcK", 0o755},
	{"console", "etc/init.d/console", 0o755},
	{"passwd", "etc/passwd", 0o644},
	{"group", "etc/group", 0o644},
	{"shadow", "etc/shadow", 0o600},
	{"hostname", "etc/hostname", 0o644},
	{"hosts", "etc/hosts", 0o644},
	{"profile", "etc/profile", 0o644},
}

// checkStatic refuses a busybox that is not a statically linked ELF binary: a dynamic one
// would need the host's libraries inside the VE.
func checkStatic(bb string) error {
	f, err := elf.Open(bb)
	if err != nil {
		return fmt.Errorf("busybox %s: %w", bb, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s is dynamically linked and would not run inside a VE: install busybox-static", bb)
		}
	}
	return nil
}

// buildBusybox fills dir with a minimal system: bin/busybox, its applet links, and an init
// configuration whose rcS touches /run/vectl-booted when the boot is complete.
func buildBusybox(ctx context.Context, dir, bb string) error {
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	for _, d := range busyboxDirs {
		if err := t.mkdir(d.path, d.mode); err != nil {
			return err
		}
	}
	// /var/run is /run on every current distribution.
	if err := t.symlink("var/run", "../run"); err != nil {
		return err
	}
	bin, err := os.Open(bb)
	if err != nil {
		return err
	}
	err = t.writeFile("bin/busybox", bin, 0o755)
	bin.Close()
	if err != nil {
		return err
	}
	if err := busyboxApplets(ctx, t, bb); err != nil {
		return err
	}
	for _, c := range busyboxConfig {
		data, err := busyboxFiles.ReadFile("busybox/" + c.src)
		if err != nil {
			return err
		}
		if err := t.writeFile(c.dst, bytes.NewReader(data), c.mode); err != nil {
			return err
		}
	}
	if err := t.writeFile("etc/resolv.conf", strings.NewReader(""), 0o644); err != nil {
		return err
	}
	release := busyboxRelease(busyboxVersion(ctx, bb))
	if err := t.writeFile("etc/os-release", strings.NewReader(release), 0o644); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return chownTree(dir, 0, 0)
	}
	return nil
}

// busyboxApplets links every applet that `busybox --list-full` reports (lines such as
// "bin/ls" or "usr/bin/env") to bin/busybox with a relative symlink.
func busyboxApplets(ctx context.Context, t *tree, bb string) error {
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list applets of %s: %w", bb, err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		rel, err := cleanName(strings.TrimSpace(line))
		if err != nil || rel == "" || rel == "bin/busybox" {
			continue // blank lines, and nothing that could point outside the tree
		}
		dir := path.Dir(rel)
		if err := t.mkdirAll(dir, 0o755); err != nil {
			return err
		}
		target, err := filepath.Rel(dir, "bin/busybox")
		if err != nil {
			return err
		}
		if err := t.symlink(rel, target); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s --list-full listed no applets", bb)
	}
	return nil
}

var busyboxVersionRE = lazyRegexp(`BusyBox v([0-9]+(?:\.[0-9]+)*)`)

// busyboxVersion returns the version in busybox's banner ("1.35.0"), or "" if it has none.
func busyboxVersion(ctx context.Context, bb string) string {
	// Without arguments busybox prints its banner and usage; the exit status varies.
	out, _ := exec.CommandContext(ctx, bb).CombinedOutput()
	if m := busyboxVersionRE().FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// busyboxRelease is the template's /etc/os-release.
func busyboxRelease(version string) string {
	var b strings.Builder
	b.WriteString("NAME=\"BusyBox\"\nID=busybox\n")
	if version != "" {
		fmt.Fprintf(&b, "VERSION_ID=%s\nPRETTY_NAME=\"BusyBox %s (vectl template)\"\n", version, version)
	} else {
		b.WriteString("PRETTY_NAME=\"BusyBox (vectl template)\"\n")
	}
	return b.String()
}

// chownTree gives everything in dir, a tree this package just built, to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
