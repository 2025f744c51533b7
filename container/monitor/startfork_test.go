package monitor

import (
	"strings"
	"testing"
)

// TestStartWantsFork: the constructor forks a background vectl start or a restore only
// (issue 22): a foreground start (systemd's notifications must come from the unit's main
// process), --wait, --no-monitor, help, another command or personality, and anything under
// NOTIFY_SOCKET run unforked.
func TestStartWantsFork(t *testing.T) {
	for _, tc := range []struct {
		line string
		env  string
		want bool
	}{
		{"vectl start 101", "", true},
		{"/usr/sbin/vectl --root /x --run-dir=/r start 101", "", true},
		{"vectl --root /x --lock-timeout 5s start 101 --force", "", true},
		{"vectl start 101 --timeout 60", "", true},
		{"vectl start 101 --skip-restore", "", true},
		{"vectl start 101 --foreground", "", false},
		{"vectl start -F 101", "", false},
		{"vectl start --foreground=true 101", "", false},
		{"vectl start -foreground 101", "", false},
		{"vectl start 101 --fore", "", false},
		{"vectl start 101 --wait", "", false},
		{"vectl start 101 --no-monitor", "", false},
		{"vectl start 101 -h", "", false},
		{"vectl start --help", "", false},
		{"vectl start -- 101", "", false},
		{"vectl start 101", "NOTIFY_SOCKET=/run/systemd/notify", false},
		{"vectl restore 101", "", true},
		{"vectl --root /x resume 101 --dumpfile /d", "", true},
		{"vectl restore 101 --help", "", false},
		{"vzctl restore 101", "", false},
		{"vectl stop 101", "", false},
		{"vectl --root start stop 101", "", false},
		{"vectl start", "", false},
		{"vzctl start 101", "", false},
		{"/usr/sbin/vzctl start 101", "", false},
		{"vectl init", "", false},
		{"vectl __monitor-idle MSG -- x __monitor start 101", "", false},
	} {
		env := []string{"PATH=/usr/bin"}
		if tc.env != "" {
			env = append(env, tc.env)
		}
		if got := wantsFork(strings.Fields(tc.line), env); got != tc.want {
			t.Errorf("%q (%s): fork %v, want %v", tc.line, tc.env, got, tc.want)
		}
	}
}
