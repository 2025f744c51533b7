//go:build integration

package integration

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// veUptime is the first field of /proc/uptime inside a VE: seconds since its boot.
func (e *env) veUptime(id string) float64 {
	e.t.Helper()
	out := e.out(id, "cat", "/proc/uptime")
	up, err := strconv.ParseFloat(strings.Fields(out)[0], 64)
	if err != nil {
		e.t.Fatalf("/proc/uptime of VE %s: %q", id, out)
	}
	return up
}

// TestTimeNamespace (issue 19): each VE boots in a time namespace of its own whose
// monotonic and boot-time clocks start at 0, so /proc/uptime, /proc/stat's btime and the
// start times in /proc/PID/stat are the VE's; exec'd processes join it; an in-VE reboot
// starts the clocks again. Checkpoint and restore carry them on (TestCheckpointRestore).
func TestTimeNamespace(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	hostNS, err := os.Readlink("/proc/self/ns/time")
	if err != nil {
		t.Fatal(err)
	}
	for _, userns := range []string{"yes", "no"} {
		id := uniqueID(t)
		e.must("create", id, "--ostemplate", tmpl, "--userns", userns)
		before := time.Now()
		e.must("start", id, "--wait", "--timeout", "60")
		up := e.veUptime(id)
		if d := age(before); up > d+1 {
			t.Errorf("userns %s: uptime %.2f s right after a start %.2f s ago", userns, up, d)
		}
		initNS := e.out(id, "readlink", "/proc/1/ns/time")
		if initNS == hostNS {
			t.Fatalf("userns %s: the VE's init is in the host's time namespace %s", userns, hostNS)
		}
		if got := e.out(id, "readlink", "/proc/self/ns/time"); got != initNS {
			t.Errorf("userns %s: an exec'd process is in time namespace %s, the init in %s", userns, got, initNS)
		}
		// Both clocks are set back, by about the host's uptime.
		offs := map[string]float64{}
		for _, line := range strings.Split(e.out(id, "cat", "/proc/1/timens_offsets"), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				s, _ := strconv.ParseFloat(f[1], 64)
				ns, _ := strconv.ParseFloat(f[2], 64)
				offs[f[0]] = s + ns/1e9
			}
		}
		hostUp := hostUptime(t)
		if b := offs["boottime"]; math.Abs(-b-hostUp) > age(before)+1 {
			t.Errorf("userns %s: boot-time offset %.2f s, host uptime %.2f s", userns, b, hostUp)
		}
		if offs["monotonic"] >= 0 {
			t.Errorf("userns %s: monotonic clock not set back: offsets %v", userns, offs)
		}
		// The boot time /proc/stat shows inside is the VE's.
		for _, line := range strings.Split(e.out(id, "cat", "/proc/stat"), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				btime, _ := strconv.ParseInt(v, 10, 64)
				if d := btime - before.Unix(); d < -1 || d > int64(age(before))+1 {
					t.Errorf("userns %s: btime inside %d, the VE started at %d", userns, btime, before.Unix())
				}
			}
		}
		time.Sleep(2 * time.Second)
		up1 := e.veUptime(id)
		if up1 < up+1.5 {
			t.Errorf("userns %s: uptime %.2f s, then %.2f s two seconds later", userns, up, up1)
		}
		// An in-VE reboot is a new boot: the clocks start again.
		init1 := e.initStart(id)
		e.exec(id, "reboot")
		eventually(t, 20*time.Second, "the reboot", func() bool {
			n := e.initStartNow(id)
			return n != 0 && n != init1 && e.exec(id, "true").code == 0
		})
		if up2 := e.veUptime(id); up2 >= up1 {
			t.Errorf("userns %s: uptime %.2f s after an in-VE reboot, %.2f s before it", userns, up2, up1)
		}
		e.must("stop", id)
		e.wantNoTrace(id)
	}
}

// hostUptime is the host's /proc/uptime.
func hostUptime(t *testing.T) float64 {
	t.Helper()
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	up, _ := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	return up
}

func age(since time.Time) float64 { return time.Since(since).Seconds() }
