package template

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// BootedMark is the file a VE's boot leaves when its init has run every boot script; the
// runtime waits for it (start --wait) for inits that give no other sign.
const BootedMark = "/run/vectl-booted"

// ErrNoInittab is AddBootedMark's answer for a tree without /etc/inittab.
var ErrNoInittab = errors.New("no /etc/inittab to add the boot-complete line to")

// bootedInittab is the inittab line AddBootedMark adds: sysvinit runs "once" entries of a
// runlevel after its "wait" entries (the rc scripts) have ended, as vzctl's /.vzfifo line.
const (
	bootedInittab = "vb:2345:once:/bin/touch " + BootedMark
	bootedComment = "# vectl: tells the host that the boot scripts are done (start --wait)"
)

// AddBootedMark makes a sysvinit tree's /etc/inittab touch BootedMark once the default
// runlevel's scripts are done. It changes nothing when the line is there already.
func AddBootedMark(root string) error {
	data, err := ReadGuestFile(root, "/etc/inittab")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrNoInittab
		}
		return fmt.Errorf("inittab: %w", err)
	}
	text, changed := withBootedLine(string(data))
	if !changed {
		return nil
	}
	if err := WriteGuestFile(root, "/etc/inittab", []byte(text), 0o644); err != nil {
		return fmt.Errorf("inittab: %w", err)
	}
	return nil
}

// withBootedLine returns inittab text with bootedInittab at its end, unless a line of the
// text is it already (changed false).
func withBootedLine(text string) (string, bool) {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == bootedInittab {
			return text, false
		}
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text + bootedComment + "\n" + bootedInittab + "\n", true
}

// WantsTmpfsTmp reports whether a systemd tree mounts a tmpfs on /tmp at boot (Debian 13
// and later pull tmp.mount into local-fs.target) and has not masked it.
func WantsTmpfsTmp(root string) bool {
	t, err := openTree(root)
	if err != nil {
		return false
	}
	defer t.Close()
	if fd, err := t.open("etc/systemd/system", unix.O_PATH|unix.O_DIRECTORY); err == nil {
		target, isLink, err := readlinkat(fd, "tmp.mount")
		unix.Close(fd)
		if err == nil && isLink && target == "/dev/null" {
			return false
		}
	}
	for _, dir := range []string{"etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"} {
		if fd, err := t.open(dir+"/local-fs.target.wants/tmp.mount", unix.O_PATH); err == nil {
			unix.Close(fd)
			return true
		}
	}
	return false
}
