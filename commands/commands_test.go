package commands

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/template"
)

// privateNode points every node setting of vectl's at dir through the environment (the
// personalities have no global flags), the cgroup parent at one that is never made, and the
// firewall table at one of its own. `make check` runs the unit tests as root, on a host where
// the demo's VE 101 may be running: with the host's /vectl cgroup parent, a fake VE 101
// would read as running and a stop would stop the real one.
func privateNode(tb testing.TB, dir string) {
	tb.Helper()
	for k, v := range map[string]string{"VECTL_ROOT": dir, "VECTL_RUN_DIR": filepath.Join(dir, "run"),
		"VECTL_LOG_DIR": filepath.Join(dir, "log"), "VECTL_VZ_CONF_DIR": filepath.Join(dir, "etc-vz"),
		"VECTL_NETWORK_CONFIG": filepath.Join(dir, "none.json"), "VECTL_PROFILE_DIR": filepath.Join(dir, "profiles"),
		"VECTL_CGROUP_PARENT": "/vectl-unit-never-made", "VECTL_FIREWALL_TABLE": "vectl_unit_never_made"} {
		tb.Setenv(k, v)
	}
}

// TestPrivateNodeCoversEverySetting checks that privateNode moves every global setting whose
// default names a place of the host's (a directory, a file, the cgroup parent, the firewall
// table) off it, so that a setting added later cannot reach the host from a unit test.
func TestPrivateNodeCoversEverySetting(t *testing.T) {
	privateNode(t, t.TempDir())
	for _, f := range globalFlags() {
		sf, ok := f.(*cli.StringFlag)
		if !ok || sf.Value == "" || sf.Name == "lock-timeout" {
			continue // no default place (the built-in plugins, ROOT/templates) or not a place
		}
		for _, env := range sf.EnvVars {
			if v := os.Getenv(env); v == "" || v == sf.Value {
				t.Errorf("privateNode leaves --%s (%s) at the host's %q", sf.Name, env, sf.Value)
			}
		}
	}
}

// run calls Main as root (unit tests run unprivileged; the root check is tested on its own)
// on a private node at root, and returns the exit status and both output streams.
func run(t *testing.T, root string, args ...string) (int, string, string) {
	t.Helper()
	privateNode(t, root)
	old := geteuid
	geteuid = func() int { return 0 }
	defer func() { geteuid = old }()
	var out, errb bytes.Buffer
	code := Main(append([]string{"vectl"}, args...), Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// fakeVE writes a VE's state the way create leaves it, without a private area.
func fakeVE(t *testing.T, root string, c store.Config) {
	t.Helper()
	s := store.New(root)
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	if c.OSTemplate == "" {
		c.OSTemplate = "busybox-1.35-x86_64"
	}
	if c.Layout == "" {
		c.Layout = "overlay"
	}
	if err := s.Reserve(&c); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishCreate(c.ID); err != nil {
		t.Fatal(err)
	}
}

// The command table must list every name its commands answer to: a run that names a command
// builds only that entry, so a missing alias would be an unknown command.
func TestCommandTableNames(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range commandTable() {
		var got []string
		for _, c := range e.build() {
			got = append(got, c.Names()...)
		}
		if !reflect.DeepEqual(got, e.names) {
			t.Errorf("command table entry %v builds commands named %v", e.names, got)
		}
		for _, n := range got {
			if seen[n] {
				t.Errorf("name %q in two entries", n)
			}
			seen[n] = true
		}
	}
}

func TestAppForBuildsTheNamedCommand(t *testing.T) {
	names := func(app *cli.App) []string {
		var out []string
		for _, c := range app.Commands {
			out = append(out, c.Name)
		}
		return out
	}
	all := len(NewApp(Streams{}).Commands)
	tests := []struct {
		args []string
		want []string // nil: the whole app
	}{
		{[]string{"vectl", "create", "101", "--ostemplate", "t"}, []string{"create"}},
		{[]string{"vectl", "--root", "/x", "--lock-timeout", "1s", "ls", "-a"}, []string{"list"}},
		{[]string{"vectl", "--root=/x", "suspend", "101"}, []string{"chkpnt"}},
		{[]string{"vectl", "clone", "101", "102"}, []string{"snapshot", "snapshot-list", "snapshot-switch",
			"snapshot-delete", "snapshot-mount", "snapshot-umount", "clone"}},
		{[]string{"vectl", "create", "--help"}, nil},
		{[]string{"vectl", "help", "create"}, nil},
		{[]string{"vectl", "template", "help", "import"}, nil},
		{[]string{"vectl", "completion", "bash"}, nil},
		{[]string{"vectl", "--version"}, nil},
		{[]string{"vectl", "no-such-command"}, nil},
		{[]string{"vectl"}, nil},
	}
	for _, tt := range tests {
		got := names(appFor(Streams{}, tt.args))
		if tt.want == nil {
			if len(got) != all {
				t.Errorf("appFor(%q) has %d commands, want all %d", tt.args, len(got), all)
			}
		} else if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("appFor(%q) has commands %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestReorderArgs(t *testing.T) {
	app := NewApp(Streams{})
	tests := []struct {
		in, want []string
	}{
		{[]string{"vectl", "create", "101", "--ostemplate", "t", "--name", "web"},
			[]string{"vectl", "create", "--ostemplate", "t", "--name", "web", "--", "101"}},
		{[]string{"vectl", "--root", "/r", "list", "-a", "-o", "ctid,status", "101"},
			[]string{"vectl", "--root", "/r", "list", "-a", "-o", "ctid,status", "--", "101"}},
		{[]string{"vectl", "list", "-s", "-ctid"}, []string{"vectl", "list", "-s", "-ctid"}},
		{[]string{"vectl", "template", "import", "f.tar", "--name", "x"},
			[]string{"vectl", "template", "import", "--name", "x", "--", "f.tar"}},
		{[]string{"vectl", "status", "101", "--json"}, []string{"vectl", "status", "--json", "--", "101"}},
		{[]string{"vectl", "create", "101", "--", "--weird"}, []string{"vectl", "create", "--", "101", "--weird"}},
		{[]string{"vectl", "help", "exit-codes"}, []string{"vectl", "help", "exit-codes"}},
		{[]string{"vectl", "--lock-timeout=1s", "mount", "101"}, []string{"vectl", "--lock-timeout=1s", "mount", "--", "101"}},
	}
	lean := NewApp(Streams{})
	streamline(lean, []string{"vectl"})
	for _, tt := range tests {
		for _, a := range []*cli.App{app, lean} {
			got, err := reorderArgs(a, tt.in)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("reorderArgs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		}
	}
	if _, err := reorderArgs(app, []string{"vectl", "frobnicate"}); !errors.Is(err, errUsage) {
		t.Errorf("unknown command: err = %v, want usage error", err)
	}
}

// streamline wraps every flag so that Names() is computed once, and keeps flag categories
// only when help is asked for.
func TestStreamline(t *testing.T) {
	app := NewApp(Streams{})
	streamline(app, []string{"vectl", "set", "101", "--ram", "1G"})
	set := findCommand(app.Commands, "set")
	for _, f := range append(append([]cli.Flag(nil), app.Flags...), set.Flags...) {
		switch f.(type) {
		case namedString, namedStringSlice, namedBool, namedInt:
		default:
			t.Errorf("flag %v (%T) not wrapped", f.Names(), f)
		}
		if a, b := f.Names(), f.Names(); len(a) == 0 || &a[0] != &b[0] {
			t.Errorf("flag %v: Names() not cached", a)
		}
		if got, want := f.Names(), unwrapped(f).Names(); !reflect.DeepEqual(got, want) {
			t.Errorf("flag names %q, urfave/cli makes %q of them", got, want)
		}
		if c, ok := f.(cli.CategorizableFlag); ok && c.GetCategory() != "" {
			t.Errorf("flag %v keeps category %q in a run without help", f.Names(), c.GetCategory())
		}
	}
	var out bytes.Buffer
	if code := Main([]string{"vectl", "set", "--help"}, Streams{Out: &out, Err: &out}); code != 0 ||
		!strings.Contains(out.String(), "Resources\n") || !strings.Contains(out.String(), "--ram value") {
		t.Fatalf("set --help: exit %d, want the Resources group with --ram:\n%s", code, out.String())
	}
}

// unwrapped returns the urfave/cli flag inside one of streamline's wrappers.
func unwrapped(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case namedString:
		return f.StringFlag
	case namedStringSlice:
		return f.StringSliceFlag
	case namedBool:
		return f.BoolFlag
	case namedInt:
		return f.IntFlag
	}
	return f
}

func TestExitStatusTable(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", container.ErrNotExist), 14},
		{fmt.Errorf("x: %w", container.ErrExist), 44},
		{fmt.Errorf("x: %w", template.ErrExist), 44},
		{fmt.Errorf("x: %w", template.ErrNotFound), 91},
		{fmt.Errorf("x: %w", container.ErrInvalidValue), 21},
		{fmt.Errorf("x: %w", container.ErrInvalidID), 21},
		{fmt.Errorf("x: %w", template.ErrUnsafeEntry), 21},
		{usageErrorf("bad"), 20},
		{fmt.Errorf("x: %w", container.ErrPermission), 12},
		{fmt.Errorf("x: %w", &store.LockedError{Path: "p"}), 9},
		{fmt.Errorf("x: %w", container.ErrRunning), 32},
		{fmt.Errorf("x: %w", container.ErrNotRunning), 31},
		{fmt.Errorf("x: %w", container.ErrNoInit), 47},
		{fmt.Errorf("x: %w", container.ErrMount), 50},
		{fmt.Errorf("x: %w", container.ErrInUse), 93},
		{container.ErrNoTemplate, 29},
		{errors.New("anything else"), 3},
		{statusError{42}, 42},
	}
	for _, tt := range tests {
		if code, _ := exitStatus(tt.err); code != tt.code {
			t.Errorf("exitStatus(%v) = %d, want %d", tt.err, code, tt.code)
		}
	}
	if _, msg := exitStatus(errors.Join(errors.New("a"), errors.New("b"))); strings.Contains(msg, "\n") {
		t.Errorf("message %q is not one line", msg)
	}
}

func TestHelpExitCodes(t *testing.T) {
	var out bytes.Buffer
	if code := Main([]string{"vectl", "help", "exit-codes"}, Streams{Out: &out, Err: &out}); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, row := range exitCodes {
		if !strings.Contains(out.String(), row.meaning) {
			t.Errorf("help exit-codes lacks %d %q", row.code, row.meaning)
		}
	}
}

func TestNotRootExits12(t *testing.T) {
	old := geteuid
	geteuid = func() int { return 1000 }
	defer func() { geteuid = old }()
	var out, errb bytes.Buffer
	code := Main([]string{"vectl", "--root", t.TempDir(), "list"}, Streams{Out: &out, Err: &errb})
	if code != 12 || !strings.Contains(errb.String(), "root") {
		t.Fatalf("exit %d, stderr %q; want 12 naming root", code, errb.String())
	}
}

func TestUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"frobnicate"},
		{"list", "--no-such-flag"},
		{"status"},
		{"status", "1", "2"},
		{"template", "build", "x", "--from", "floppy"},
	} {
		code, out, errs := run(t, root, args...)
		if code != 20 || out != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 20 and one line", args, code, out, errs)
		}
	}
}

func TestCreateRefusals(t *testing.T) {
	root := t.TempDir()
	fakeVE(t, root, store.Config{ID: "150", Name: "web"})
	tests := []struct {
		args []string
		code int
		in   string
	}{
		{[]string{"create", "160"}, 29, "--ostemplate"},
		{[]string{"create", "Bad/Id", "--ostemplate", "x"}, 21, `"Bad/Id"`},
		{[]string{"create", "160", "--ostemplate", "nosuch-1-x86_64"}, 91, "nosuch-1-x86_64"},
		{[]string{"create", "150", "--ostemplate", "busybox-1.35-x86_64"}, 44, "150"},
		{[]string{"create", "160", "--ostemplate", "busybox-1.35-x86_64", "--name", "web"}, 44, "web"},
		{[]string{"create", "160", "--ostemplate", "busybox-1.35-x86_64", "--layout", "zfs"}, 21, "zfs"},
		{[]string{"create", "160", "--ostemplate", "busybox-1.35-x86_64", "--hostname", "-bad-"}, 21, "-bad-"},
		{[]string{"create", "160", "--ostemplate", "../etc"}, 21, "../etc"},
	}
	for _, tt := range tests {
		code, _, errs := run(t, root, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.in) {
			t.Errorf("%q: exit %d, stderr %q; want %d mentioning %q", tt.args, code, errs, tt.code, tt.in)
		}
	}
	// Nothing half-created: only the pre-existing VE is there.
	ids, _ := store.New(root).IDs()
	if !reflect.DeepEqual(ids, []string{"150"}) {
		t.Fatalf("VEs after refused creates: %v", ids)
	}
}

func TestLockedVEExits9(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("requires flock(1) from util-linux")
	}
	root := t.TempDir()
	fakeVE(t, root, store.Config{ID: "101"})
	// A second process holds the VE's lock, as a concurrent vectl would.
	holder := exec.Command("flock", "-x", store.New(root).LockPath("101"), "-c", "echo locked; read x")
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); holder.Wait() }()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("lock holder said %q", line)
	}
	start := time.Now()
	code, _, errs := run(t, root, "--lock-timeout", "300ms", "destroy", "101")
	if code != 9 || !strings.Contains(errs, "101") {
		t.Fatalf("exit %d, stderr %q; want 9 naming the VE", code, errs)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("gave up before the lock timeout")
	}
	if !store.New(root).Exists("101") {
		t.Fatal("the locked VE was destroyed")
	}
}

func TestCorruptConfigIsReportedNotRewritten(t *testing.T) {
	root := t.TempDir()
	fakeVE(t, root, store.Config{ID: "101"})
	path := store.New(root).ConfigPath("101")
	bad := []byte(`{"schema": 1, "id": "101", "ostemplate": `)
	os.WriteFile(path, bad, 0o600)

	code, _, errs := run(t, root, "mount", "101")
	if code != 3 || !strings.Contains(errs, path) {
		t.Fatalf("mount: exit %d, stderr %q; want 3 naming %s", code, errs, path)
	}
	code, out, errs := run(t, root, "list", "-a")
	if code != 0 || !strings.Contains(out, "broken") || !strings.Contains(errs, path) {
		t.Fatalf("list: exit %d, out %q, err %q; want the VE shown broken and a warning naming the file", code, out, errs)
	}
	if data, _ := os.ReadFile(path); !bytes.Equal(data, bad) {
		t.Fatal("corrupt config was overwritten")
	}
	os.WriteFile(path, []byte(`{"schema": 7, "id": "101"}`), 0o600)
	if code, _, errs := run(t, root, "mount", "101"); code != 3 || !strings.Contains(errs, "newer vectl") {
		t.Fatalf("newer schema: exit %d, stderr %q", code, errs)
	}
}

func TestStatusOfMissingVE(t *testing.T) {
	code, out, _ := run(t, t.TempDir(), "status", "999")
	if code != 0 || out != "VEID 999 deleted unmounted down\n" {
		t.Fatalf("exit %d, out %q", code, out)
	}
	code, out, _ = run(t, t.TempDir(), "status", "999", "--json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["exist"] != false || v["status"] != "deleted" {
		t.Fatalf("exit %d, out %q", code, out)
	}
}

func TestListEmptyAndFields(t *testing.T) {
	root := t.TempDir()
	code, out, _ := run(t, root, "list", "-a", "-j")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty list -j: exit %d, %q; want []", code, out)
	}
	code, out, _ = run(t, root, "list", "-a")
	if code != 0 || !strings.Contains(out, "CTID") || strings.Count(out, "\n") != 1 {
		t.Fatalf("empty list: exit %d, %q; want only the header", code, out)
	}

	// Ids no admin picks: VE cgroups are host-wide (/vectl/ID), so a real VE 101 running on
	// the host would make the fake one look running.
	fakeVE(t, root, store.Config{ID: "987101", Hostname: "b.example", Name: "web"})
	fakeVE(t, root, store.Config{ID: "98720", Hostname: "a.example"})
	fakeVE(t, root, store.Config{ID: "db", Description: "the database"})

	// Not running: the default (running only) view is empty, -a and -S show all.
	if _, out, _ := run(t, root, "list", "-H"); out != "" {
		t.Fatalf("list of running VEs = %q, want nothing", out)
	}
	_, out, _ = run(t, root, "list", "-a", "-H", "-o", "ctid")
	if got := strings.Fields(out); !reflect.DeepEqual(got, []string{"98720", "987101", "db"}) {
		t.Fatalf("ids sorted = %q", got)
	}
	_, out, _ = run(t, root, "list", "-S", "-1", "-s", "-ctid")
	if got := strings.Fields(out); !reflect.DeepEqual(got, []string{"db", "987101", "98720"}) {
		t.Fatalf("reverse sort = %q", got)
	}
	_, out, _ = run(t, root, "list", "-a", "-H", "-o", "ctid,hostname", "-s", "hostname")
	if !strings.HasPrefix(strings.TrimLeft(out, " "), "98720 a.example") {
		t.Fatalf("sort by hostname: %q", out)
	}
	_, out, _ = run(t, root, "list", "-a", "-j", "-o", "ctid,status,name")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("list -j: %v %q", err, out)
	}
	if rows[1]["ctid"] != "987101" || rows[1]["status"] != "stopped" || rows[1]["name"] != "web" || len(rows[1]) != 3 {
		t.Fatalf("row = %v", rows[1])
	}
	_, out, _ = run(t, root, "list", "-o", "ctid,description", "web", "db")
	if !strings.Contains(out, "the database") || !strings.Contains(out, "987101") || strings.Contains(out, " 98720 ") {
		t.Fatalf("list by id and name: %q", out)
	}
	if code, _, errs := run(t, root, "list", "-o", "ctid,colour"); code != 21 || !strings.Contains(errs, "colour") {
		t.Fatalf("unknown field: exit %d, %q", code, errs)
	}
	if code, _, _ := run(t, root, "list", "nosuch"); code != 14 {
		t.Fatalf("unknown VE: exit %d", code)
	}
}

// TestReadOnly: the commands that catch no signal are the reading ones (or none at all),
// found after the global flags and their values; each is one of vectl's command names.
func TestReadOnly(t *testing.T) {
	globals := globalFlags()
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"vectl"}, true},
		{[]string{"vectl", "--version"}, true},
		{[]string{"vectl", "list", "-a"}, true},
		{[]string{"vectl", "ls"}, true},
		{[]string{"vectl", "--root", "/srv/vectl", "status", "101"}, true},
		{[]string{"vectl", "--root", "list", "stop", "101"}, false}, // "list" is --root's value
		{[]string{"vectl", "stop", "--fast", "101"}, false},
		{[]string{"vectl", "set", "101", "--ram", "1G"}, false},
		{[]string{"vectl", "template", "list"}, false}, // template also downloads and builds
		{[]string{"vectl", "exec", "101", "ls"}, false},
		{[]string{"vectl", "stats", "--interval", "5s"}, false}, // it waits: interruptible, exit 130
		{[]string{"vectl", "help", "stop"}, true},
	} {
		if got := readOnly(globals, c.args); got != c.want {
			t.Errorf("readOnly(%q) = %v, want %v", c.args, got, c.want)
		}
	}
	names := map[string]bool{"help": true, "h": true}
	for _, e := range commandTable() {
		for _, n := range e.names {
			names[n] = true
		}
	}
	for n := range readOnlyCommands {
		if !names[n] {
			t.Errorf("readOnlyCommands names %q, which is no command of vectl's", n)
		}
	}
}
