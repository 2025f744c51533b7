package container

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vectl/vectl/container/store"
)

// TestSyncPrivateVanished: a pass made while the VE runs accepts rsync's exit 24 (files the VE
// removed while they were copied); a pass made with the VE stopped or frozen does not, and no
// pass accepts any other failure. rsync here is a stand-in on PATH that ends as told.
func TestSyncPrivateVanished(t *testing.T) {
	fakeRsync(t)
	g := &migration{
		m:            &Manager{store: store.New(t.TempDir())},
		j:            migrateJournal{ID: "101"},
		r:            &remote{host: "root@127.0.0.1"},
		dest:         migrateReply{Private: "/nowhere"},
		layersCopied: true,
	}
	const (
		acl    = `rsync: [sender] get_acl: sys_acl_get_file(tmp/f8, ACL_TYPE_ACCESS): No such file or directory (2)`
		xattr  = `rsync: [sender] get_xattr_names: llistxattr("/p/tmp/f9",1024) failed: No such file or directory (2)`
		denied = `rsync: [sender] send_files failed to open "/p/etc/shadow": Permission denied (13)`
		recv   = `rsync: [receiver] get_acl: sys_acl_get_file(tmp/f8, ACL_TYPE_ACCESS): No such file or directory (2)`
		gone   = `rsync: [sender] change_dir "/p" failed: No such file or directory (2)`
	)
	for _, c := range []struct {
		exit string
		errs string // the errors rsync printed before its summary
		live bool
		ok   bool
	}{
		{"0", "", false, true},
		{"24", "", true, true},
		{"24", "", false, false},
		{"23", "", true, false},
		{"12", "", true, false},
		// 23 from files that vanished while rsync read their ACL or extended attributes.
		{"23", acl + "\n" + xattr, true, true},
		{"23", acl, false, false},
		// 23 from anything else fails at once.
		{"23", acl + "\n" + denied, true, false},
		{"23", recv, true, false},
		{"23", gone, true, false},
	} {
		t.Setenv("FAKE_RSYNC_EXIT", c.exit)
		t.Setenv("FAKE_RSYNC_ERRS", c.errs)
		err := g.syncPrivate(context.Background(), c.live)
		if (err == nil) != c.ok {
			t.Fatalf("rsync exit %s, live %v: got %v, want ok=%v", c.exit, c.live, err, c.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "copy the private area: rsync: ") || !strings.Contains(err.Error(), "(code "+c.exit+")")) {
			t.Fatalf("rsync exit %s: the error does not tell rsync's last line: %v", c.exit, err)
		}
	}
}

// fakeRsync puts an rsync on PATH that prints $FAKE_RSYNC_ERRS (lines), then says some
// files vanished and exits with $FAKE_RSYNC_EXIT.
func fakeRsync(t *testing.T) {
	bin := t.TempDir()
	script := "#!/bin/sh\n[ -z \"$FAKE_RSYNC_ERRS\" ] || printf '%s\\n' \"$FAKE_RSYNC_ERRS\" >&2\n" +
		"echo \"rsync warning: some files vanished before they could be transferred (code $FAKE_RSYNC_EXIT)\" >&2\nexit $FAKE_RSYNC_EXIT\n"
	if err := os.WriteFile(filepath.Join(bin, "rsync"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
}

// TestCopyUpperVanished: a snapshot's copy of a stopped VE (its one pass, not beside a
// running VE) fails when rsync says files vanished, as the frozen pass of a running VE's does.
func TestCopyUpperVanished(t *testing.T) {
	fakeRsync(t)
	m := &Manager{store: store.New(t.TempDir())}
	for _, c := range []struct {
		exit string
		ok   bool
	}{{"0", true}, {"24", false}, {"23", false}} {
		t.Setenv("FAKE_RSYNC_EXIT", c.exit)
		_, err := m.copyUpper(context.Background(), "101", "/nowhere/upper", "/nowhere/copy", false, nil)
		if (err == nil) != c.ok {
			t.Fatalf("rsync exit %s: got %v, want ok=%v", c.exit, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "(code "+c.exit+")") {
			t.Fatalf("rsync exit %s: the error does not tell rsync's last line: %v", c.exit, err)
		}
	}
}
