// Package pagecache decides when vectl's programs are laid out again in the page cache in
// 2 MiB folios; the layout itself is the idle loop program's layout helper (package idle,
// layout.c, which says why it pays).
package pagecache

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Scattered reports whether this process maps less than half of the file-backed memory it
// has resident through 2 MiB page-table entries (/proc/self/smaps_rollup: FilePmdMapped
// against Rss less Anonymous): the program it runs sits in the page cache in small folios.
// A vectl process maps no other file of note. False when the file cannot be read.
func Scattered() bool {
	data, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return false
	}
	return scattered(data)
}

func scattered(rollup []byte) bool {
	rss, anon, pmd := field(rollup, "Rss:"), field(rollup, "Anonymous:"), field(rollup, "FilePmdMapped:")
	if rss < 0 || anon < 0 || pmd < 0 {
		return false
	}
	return pmd*2 < rss-anon
}

// field returns the kB figure of a smaps_rollup line, or -1.
func field(rollup []byte, name string) int64 {
	for line := range bytes.Lines(rollup) {
		if rest, ok := bytes.CutPrefix(line, []byte(name)); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// Due reports whether a layout may start now: stamp is missing or was last marked more than
// every ago. It then marks stamp (its modification time) as of now. A node where the layout
// cannot succeed (pages kept mapped by busy commands, no large folios) tries once per every.
func Due(stamp string, every time.Duration) bool {
	if Recent(stamp, every) {
		return false
	}
	return Mark(stamp)
}

// Mark sets stamp's modification time to now, creating it if need be, and reports whether
// it could: a check whose outcome holds for a while (the programs already sit in large
// folios) marks it too, so that the checks within the next period are one stat each.
func Mark(stamp string) bool {
	now := time.Now()
	if err := os.Chtimes(stamp, now, now); err != nil {
		f, err := os.OpenFile(stamp, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return false
		}
		f.Close()
	}
	return true
}

// Recent reports whether stamp was marked (by Due or Mark) less than every ago, without marking
// it: one stat, asked before Scattered, which walks the process's whole memory map (0.1 to
// 0.2 ms of a monitor's CPU here), so that starts in quick succession skip that walk.
func Recent(stamp string, every time.Duration) bool {
	st, err := os.Stat(stamp)
	return err == nil && time.Since(st.ModTime()) < every
}

// LargeFolios reports whether the file system holding path keeps files in large page-cache
// folios, without which there is nothing to lay out: ext4 from Linux 6.16 and xfs from
// 5.18 do; other file systems are not counted on.
func LargeFolios(path string) bool {
	var fs unix.Statfs_t
	var un unix.Utsname
	if unix.Statfs(path, &fs) != nil || unix.Uname(&un) != nil {
		return false
	}
	return largeFolios(int64(fs.Type), unix.ByteSliceToString(un.Release[:]))
}

func largeFolios(fsType int64, release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return false
	}
	switch fsType {
	case unix.EXT4_SUPER_MAGIC:
		return major > 6 || major == 6 && minor >= 16
	case unix.XFS_SUPER_MAGIC:
		return major > 5 || major == 5 && minor >= 18
	}
	return false
}
