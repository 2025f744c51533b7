package container

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/join"
	"github.com/vectl/vectl/resources"
)

// initPidFile records the VE's current init ("pid starttime"), written at every boot, so that
// usage reads need not load libcontainer's state.
const initPidFile = "init.pid"

// Stats is the usage of one VE for monitoring.
type Stats struct {
	ID         string
	Running    bool
	Uptime     time.Duration
	CPUTime    time.Duration
	CPUPercent float64 // of one CPU: over the sampling interval, else averaged since start
	Usage      resources.Usage
	Disk       *DiskUsage // image layout only
	NetIn      int64      // bytes the VE received
	NetOut     int64      // bytes the VE sent
	Limits     resources.Limits
}

// Stats collects usage for the VEs named by refs (every VE when empty). With interval > 0 the
// CPU percentage is measured over that interval; otherwise it is the average since start.
func (m *Manager) Stats(ctx context.Context, refs []string, interval time.Duration) ([]Stats, error) {
	ids, err := m.ids(refs)
	if err != nil {
		return nil, err
	}
	out := make([]Stats, 0, len(ids))
	for _, id := range ids {
		cfg, err := m.store.LoadConfig(id)
		if err != nil {
			return nil, err
		}
		out = append(out, m.stats(cfg))
	}
	if interval > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
		for i := range out {
			if !out[i].Running {
				continue
			}
			u, err := resources.ReadUsage(m.cgroupPath(out[i].ID))
			if err == nil {
				out[i].CPUPercent = 100 * float64(u.CPUTime-out[i].CPUTime) / float64(interval)
				out[i].CPUTime = u.CPUTime
			}
		}
	}
	return out, nil
}

// ids resolves refs to VE ids (all VEs when refs is empty).
func (m *Manager) ids(refs []string) ([]string, error) {
	if len(refs) == 0 {
		return m.store.IDs()
	}
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		id, err := m.resolve(r)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

func (m *Manager) stats(cfg *Config) Stats {
	s := Stats{ID: cfg.ID, Limits: cfg.Resources, Running: m.populated(cfg.ID)}
	if d, ok := m.diskUsage(cfg); ok {
		s.Disk = &d
	}
	if !s.Running {
		return s
	}
	if u, err := resources.ReadUsage(m.cgroupPath(cfg.ID)); err == nil {
		s.Usage = u
		s.CPUTime = u.CPUTime
	}
	if pid, ok := readPidFile(m.runFile(cfg.ID, initPidFile)); ok {
		s.Uptime = processAge(pid)
		s.NetIn, s.NetOut = netBytes(pid)
	}
	if s.Uptime > 0 {
		s.CPUPercent = 100 * float64(s.CPUTime) / float64(s.Uptime)
	}
	return s
}

// processAge is how long a process has been running.
func processAge(pid int) time.Duration {
	start, err := join.StartTime(pid)
	if err != nil {
		return 0
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	const hz = 100 // USER_HZ, the unit of /proc/pid/stat start times
	return time.Duration(ts.Nano()) - time.Duration(start)*time.Second/hz
}

// netBytes sums the traffic of the VE's interfaces (loopback aside) as the VE sees it, from
// /proc/PID/net/dev of its init (that file shows the process's own network namespace).
func netBytes(pid int) (in, out int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		rx, _ := strconv.ParseInt(f[0], 10, 64)
		tx, _ := strconv.ParseInt(f[8], 10, 64)
		in, out = in+rx, out+tx
	}
	return in, out
}
