package commands

import (
	"bytes"
	"strings"
	"testing"
)

// The fuzz targets of the command line parsers that take untrusted input: the personalities'
// argv (node scripts and clients such as libvirt build it), vzctl's values and netif specs.
// An argv is the fuzzer's string split at NUL bytes. `make fuzz` runs each for FUZZTIME.

func splitArgs(s string) []string { return strings.Split(s, "\x00") }

// fuzzMain runs a personality. Unprivileged (root false), parsing and validation run and
// it stops at the root check. As root it runs against the empty state root that fuzzRoot
// set up: every command then ends at "no such VE" or "no such template" after parsing its
// options, having touched nothing but that root.
func fuzzMain(t *testing.T, name, args string, root bool) {
	old := geteuid
	geteuid = func() int {
		if root {
			return 0
		}
		return 1000
	}
	defer func() { geteuid = old }()
	var out, errb bytes.Buffer
	code := Main(append([]string{name}, splitArgs(args)...), Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	if code < 0 || code > 255 {
		t.Fatalf("%s %q: exit status %d", name, args, code)
	}
	if code != 0 && errb.Len() == 0 && out.Len() == 0 {
		t.Fatalf("%s %q: exit %d without a word", name, args, code)
	}
	for _, line := range strings.Split(strings.TrimRight(errb.String(), "\n"), "\n") {
		if strings.Contains(line, "panic") || strings.Contains(line, "goroutine ") {
			t.Fatalf("%s %q: %s", name, args, errb.String())
		}
	}
}

// fuzzRoot points vectl's settings at an empty scratch root for the fuzz target's run.
func fuzzRoot(f *testing.F) {
	privateNode(f, f.TempDir())
}

func FuzzVzctlArgs(f *testing.F) {
	fuzzRoot(f)
	for _, s := range []string{"--help", "--quiet\x00start\x00101\x00--wait", "set\x00101\x00--ram\x00256M:1G\x00--save",
		"set\x00101\x00--netif_add\x00eth1,00:11:22:33:44:55,veth101.1,,br0", "exec\x00101\x00ls | sort",
		"start\x00destroy\x00101", "create\x00101\x00--ostemplate\x00\xab\xcd", "chkpnt\x00101\x00--suspend\x00--resume",
		"--verbose\x00--skiplock", "set\x00101\x00--kmemsize\x00unlimited:1P", "console\x00101\x00-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		fuzzMain(t, "vzctl", args, false)
		// Only commands that stop at a missing VE or template run as root.
		if a := splitArgs(args); len(a) >= 2 && !strings.Contains(args, "--config") {
			fuzzMain(t, "vzctl", args, true)
		}
	})
}

func FuzzVzlistArgs(f *testing.F) {
	fuzzRoot(f)
	for _, s := range []string{"-a\x00-ovpsid,status\x00-H", "-s-bootorder", "-octid,kmemsize.l\x00-j", "-1\x00-a",
		"-h\x00web*\x00-N\x00[a-", "--out=ctid\x00--no-h", "-L", "--help", "-aHtjSn", "101\x00web\x00-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		fuzzMain(t, "vzlist", args, false)
		fuzzMain(t, "vzlist", args, true)
	})
}

func FuzzVectlArgs(f *testing.F) {
	for _, s := range []string{"list\x00-a\x00-o\x00ctid,status", "set\x00101\x00--ram\x00512M", "--root\x00/x\x00status\x00101",
		"create\x00101\x00--ostemplate\x00t\x00--ipadd\x0010.0.0.1/33", "help\x00exit-codes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) { fuzzMain(t, "vectl", args, false) })
}

func FuzzGetoptLong(f *testing.F) {
	for _, s := range []string{"-ovpsid,status\x00-H", "--output=x\x00--\x00-a", "--na", "-\x00--", "-o"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		opts, rest, err := getoptLong("p", splitArgs(args), "HtSanjN:h:d:o:s:Le1", vzlistLongs)
		if err != nil {
			if opts != nil || rest != nil {
				t.Fatalf("%q: results beside the error %v", args, err)
			}
			return
		}
		// A word yields at most one option per character (a cluster such as -aHt).
		if len(opts)+len(rest) > len(args)+1 {
			t.Fatalf("%q: %d options and %d words out of %d bytes", args, len(opts), len(rest), len(args))
		}
		for _, o := range opts {
			if o.key == "" || !strings.Contains("HtSanjNhdosLe1", o.key) {
				t.Fatalf("%q: unknown option key %q", args, o.key)
			}
		}
	})
}

func FuzzVzctlValues(f *testing.F) {
	for _, s := range []string{"256M", "0:65536", "1.5G", "unlimited", "1P", "12Q", ":", "9999999999999999999T"} {
		f.Add("ram", s)
		f.Add("diskspace", s)
	}
	f.Add("netif", "eth1,00:11:22:33:44:55,veth101.1,00:11:22:33:44:66,br0")
	f.Fuzz(func(t *testing.T, name, value string) {
		if name == "netif" {
			out := vzctlNetif(value)
			if !strings.HasPrefix(out, strings.Split(value, ",")[0]) {
				t.Fatalf("vzctlNetif(%q) = %q lost the interface name", value, out)
			}
			return
		}
		out, err := vzctlLimit(name, value)
		if err == nil && out != "unlimited" && (out == "" || strings.HasPrefix(out, "-")) {
			t.Fatalf("vzctlLimit(%q, %q) = %q", name, value, out)
		}
	})
}
