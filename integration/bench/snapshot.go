package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// benchSnapshot: snapshots, clones and backups of a Debian VE holding 1 GiB of private data.
// A stopped VE's snapshot and a clone of it (overlay layout: a rename and a new empty upper
// directory, whatever the data size) against LXC's overlay snapshot clone (lxc-copy -s -B
// overlay) of a container on the same rootfs; the time a running VE is frozen during a
// snapshot and during backup --mode suspend (targets: 20 ms, 20 ms, 200 ms, 200 ms).
func (b *bench) benchSnapshot() error {
	id, clone := b.id("snap"), b.id("snapclone")
	if err := b.create(id, debianName); err != nil {
		return err
	}
	defer b.destroy(clone, id)
	if _, err := b.v.do("start", id, "--wait", "--timeout", "120"); err != nil {
		return err
	}
	if _, err := b.v.do("exec", id, "sh", "-c", "head -c 1G /dev/urandom > /root/big"); err != nil {
		return err
	}
	if _, err := b.v.do("stop", id); err != nil {
		return err
	}
	lastSnapshot := func() (string, int64, error) {
		out, err := b.v.do("snapshot-list", id, "--json")
		if err != nil {
			return "", 0, err
		}
		var snaps []struct {
			UUID   string `json:"uuid"`
			Frozen int64  `json:"frozen_ms"`
		}
		if err := json.Unmarshal([]byte(out), &snaps); err != nil || len(snaps) == 0 {
			return "", 0, fmt.Errorf("snapshot-list --json: %v (%q)", err, out)
		}
		s := snaps[len(snaps)-1]
		return s.UUID, s.Frozen, nil
	}
	vs := []*variant{
		{name: "vectl snapshot (stopped, 1 GiB private data)", vectl: true, pass: func(p int, rec recorder) error {
			d, err := b.v.timed("snapshot", id)
			if err != nil {
				return err
			}
			rec("snapshot/vectl", d)
			uuid, _, err := lastSnapshot()
			if err != nil {
				return err
			}
			_, err = b.v.do("snapshot-delete", id, "--id", uuid) // folds the layer back into the VE
			return err
		}},
		{name: "vectl clone (stopped source, 1 GiB private data)", vectl: true, pass: func(p int, rec recorder) error {
			d, err := b.v.timed("clone", id, clone)
			if err != nil {
				return err
			}
			rec("clone/vectl", d)
			_, err = b.v.do("destroy", clone)
			return err
		}},
	}
	if b.lxc != nil {
		src, dst := filepath.Base(b.debianTmpl), b.id("lxc-snap")
		if err := b.lxc.define(src, b.debianTmpl); err != nil {
			return err
		}
		vs = append(vs, &variant{name: "lxc-copy -s -B overlay", passes: b.costly(20), pass: func(p int, rec recorder) error {
			d, err := b.timed(b.lxc.argv("lxc-copy", src, "-N", dst, "-s", "-B", "overlay", "-o", b.lxc.log, "-l", "ERROR")...)
			if err != nil {
				log, _ := os.ReadFile(b.lxc.log)
				return fmt.Errorf("%w: %s", err, lastLines(string(log), 2))
			}
			rec("snapshot/lxc", d)
			rec("clone/lxc", d)
			return os.RemoveAll(filepath.Join(b.lxc.path, dst))
		}})
	}
	b.interleave(b.passes(20), vs...)
	peers := [][2]string{{"lxc", "lxc-copy -s -B overlay"}}
	b.peerRows(cmp{group: "snapshot", name: "snapshot of a stopped Debian VE with 1 GiB of private data (overlay)",
		command: "vectl snapshot"}, "snapshot", peers, map[string]*Target{"lxc": valueMax(20, "ms").as("snapshot")})
	b.peerRows(cmp{group: "snapshot", name: "clone of a stopped Debian VE with 1 GiB of private data (overlay)",
		command: "vectl clone"}, "clone", peers, map[string]*Target{"lxc": valueMax(20, "ms").as("clone")})

	// Frozen time of the running VE.
	if _, err := b.v.do("start", id, "--wait", "--timeout", "120"); err != nil {
		return err
	}
	dir := filepath.Join(b.work, "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	liveSnapshot := func(key string, args ...string) func(p int, rec recorder) error {
		return func(p int, rec recorder) error {
			if _, err := b.v.do(append([]string{"snapshot", id}, args...)...); err != nil {
				return err
			}
			uuid, frozen, err := lastSnapshot()
			if err != nil {
				return err
			}
			rec(key, time.Duration(frozen)*time.Millisecond)
			_, err = b.v.do("snapshot-delete", id, "--id", uuid)
			return err
		}
	}
	live := []*variant{
		{name: "vectl snapshot (running, memory dumped)", vectl: true, passes: b.costly(5), pass: liveSnapshot("snapshot-frozen/vectl")},
		{name: "vectl snapshot --skip-suspend (running, files only)", vectl: true, passes: b.costly(5),
			pass: liveSnapshot("snapshot-frozen-files/vectl", "--skip-suspend")},
		{name: "vectl backup --mode suspend (running)", vectl: true, passes: b.costly(3), pass: func(p int, rec recorder) error {
			file := filepath.Join(dir, fmt.Sprintf("b%d.tar", p+1))
			out, err := b.v.do("backup", id, file, "--mode", "suspend", "--compress", "none", "--json")
			if err != nil {
				return err
			}
			var rep struct {
				FrozenMs int64 `json:"frozen_ms"`
			}
			if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rep); err != nil {
				return fmt.Errorf("backup --json: %w", err)
			}
			rec("backup-frozen/vectl", time.Duration(rep.FrozenMs)*time.Millisecond)
			return os.Remove(file)
		}},
	}
	b.interleave(b.costly(5), live...)
	b.compare(cmp{group: "snapshot", name: "frozen time of a running Debian VE (1 GiB private data) during snapshot (files + CRIU memory dump)",
		key: "snapshot-frozen/vectl", command: "vectl snapshot ID (frozen_ms)", target: valueMax(200, "ms").as("snapshot frozen")})
	b.compare(cmp{group: "snapshot", name: "frozen time of a running Debian VE (1 GiB private data) during snapshot --skip-suspend (files only)",
		key: "snapshot-frozen-files/vectl", command: "vectl snapshot ID --skip-suspend (frozen_ms)"})
	b.compare(cmp{group: "snapshot", name: "frozen time of a running Debian VE (1 GiB private data) during backup --mode suspend",
		key: "backup-frozen/vectl", command: "vectl backup ID FILE --mode suspend (frozen_ms)", target: valueMax(200, "ms").as("backup frozen")})
	_, err := b.v.do("stop", id)
	return err
}
