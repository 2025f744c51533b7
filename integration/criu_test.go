//go:build integration && !vmtest

package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// criuBin is CRIU as make criu (part of make deps) installs it.
const criuBin = "/usr/local/lib/vectl/criu/criu"

// TestCriuInstalled (issue 17): make deps leaves a criu of at least 4.1 that runs on this
// kernel: `criu check` passes with the wrapper's own libraries.
func TestCriuInstalled(t *testing.T) {
	out, err := exec.Command(criuBin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s (run make criu)", criuBin, err, out)
	}
	v := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "Version: "))
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || major < 4 || major == 4 && minor < 1 {
		t.Fatalf("criu version %q: vectl needs 4.1 or newer", v)
	}
	out, err = exec.Command(criuBin, "check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Looks good") {
		t.Fatalf("criu check: %v\n%s", err, out)
	}
}
