package container

import (
	"context"
	"fmt"
	"strings"

	"github.com/vectl/vectl/network"
)

// HostCleanup undoes this instance's host-wide network set-up (network.CleanupHost: its
// firewall tables, pool routes, proxy entries, the bridges a vectl made, and the sysctls
// vectl changed once no other instance needs them), after collecting network attachments
// that VEs which died without teardown left behind. It refuses, changing nothing, while any
// of the instance's VEs runs. It holds the global lock and every VE's lock throughout, so no
// VE of the instance can start meanwhile and find its firewall gone.
func (m *Manager) HostCleanup(ctx context.Context) (*network.HostCleanup, error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	n, err := m.net()
	if err != nil {
		return nil, err
	}
	if err := n.GC(ctx, m.claimStale); err != nil {
		return nil, fmt.Errorf("host cleanup: network gc: %w", err)
	}
	gl, err := m.store.LockGlobal(m.opts.LockTimeout)
	if err != nil {
		return nil, fmt.Errorf("host cleanup: %w", err)
	}
	defer gl.Unlock()
	ids, err := m.store.IDs()
	if err != nil {
		return nil, err
	}
	var running []string
	for _, id := range ids {
		l, err := m.store.LockVE(id, m.opts.LockTimeout)
		if err != nil {
			return nil, fmt.Errorf("host cleanup: VE %s: %w", id, err)
		}
		defer l.Unlock()
		if m.populated(id) {
			running = append(running, id)
		}
	}
	if len(running) > 0 {
		return nil, fmt.Errorf("host cleanup: VE %s: %w (stop it first; nothing was changed)",
			strings.Join(running, ", "), ErrRunning)
	}
	res, err := n.CleanupHost()
	if err != nil {
		return res, fmt.Errorf("host cleanup: %w", err)
	}
	return res, nil
}
