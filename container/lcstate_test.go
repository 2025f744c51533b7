package container

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
)

// TestReadLCState: vectl's own reading of a libcontainer state (readLCState) finds what
// libcontainer wrote with its own types, so a renamed field in a newer libcontainer fails
// here instead of leaving VEs' cgroups behind.
func TestReadLCState(t *testing.T) {
	m := &Manager{opts: Options{RunDir: t.TempDir()}}
	var st libcontainer.State
	st.ID, st.InitProcessPid, st.InitProcessStartTime = "101", 4242, 987654
	st.CgroupPaths = map[string]string{"": "/sys/fs/cgroup/unified/vectl/101", "pids": "/sys/fs/cgroup/pids/vectl/101"}
	data, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(m.lcRoot(), "101")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := m.readLCState("101")
	if err != nil {
		t.Fatal(err)
	}
	if got.Pid != 4242 || got.Start != 987654 || !maps.Equal(got.CgroupPaths, st.CgroupPaths) {
		t.Fatalf("readLCState = %+v, want pid 4242, start 987654, cgroups %v", got, st.CgroupPaths)
	}
	if _, err := m.readLCState("102"); !os.IsNotExist(err) {
		t.Fatalf("readLCState of a VE without state: %v, want not-exist", err)
	}
}
