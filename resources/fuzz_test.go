package resources

import (
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets of the resource value parsers (vzctl's values on the command line, in the
// vzctl config and in profiles) and of the profile reader. `make fuzz` runs each.

func FuzzLimitsSet(f *testing.F) {
	for _, n := range Names {
		for _, v := range []string{"1", "256M", "unlimited", "0-1,3", "50%", "100:200", "64M:80M", "", "-1", "9P"} {
			f.Add(n, v)
		}
	}
	h := Host{CPUs: 2, Nodes: 1, NoFileHi: 1 << 20}
	f.Fuzz(func(t *testing.T, name, value string) {
		var l Limits
		if err := l.Set(name, value, h); err != nil {
			return
		}
		// What was taken reads back and parses again to the same value.
		s := l.Format(name)
		if s == "" {
			t.Fatalf("Set(%q, %q) stored nothing", name, value)
		}
		var again Limits
		if IsUBC(name) {
			if err := again.Set(name, s, h); err != nil || again.Format(name) != s {
				t.Fatalf("Set(%q, %q): %q does not read back: %v", name, value, s, err)
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "256M", "unlimited", "1T", "0", "+1", "9223372036854775807K", "1.5G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s, KiB)
		if err == nil && n < 0 && n != Unlimited {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

func FuzzParseUBC(f *testing.F) {
	for _, s := range []string{"64M:80M", "unlimited", "10P", "4096B", "1:2:3", "5:1", ":", "99999999999999999999G"} {
		f.Add("kmemsize", s)
		f.Add("privvmpages", s)
	}
	f.Fuzz(func(t *testing.T, name, s string) {
		b, l, err := ParseUBC(name, s)
		if err == nil && (b < 0 || l < b) {
			t.Fatalf("ParseUBC(%q, %q) = %d:%d", name, s, b, l)
		}
	})
}

func FuzzProfile(f *testing.F) {
	f.Add([]byte(`{"ram": "256M", "swap": "512M", "numproc": 300, "userns": "yes"}`))
	f.Add([]byte(`{"cpus": 1.5, "kmemsize": "1G:2G"}`))
	f.Add([]byte(`{"ram": {"x": 1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "p.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		Profile(dir, "p", Host{CPUs: 2, Nodes: 1, NoFileHi: 1 << 20})
		ProfileUserNS(dir, "p")
	})
}
