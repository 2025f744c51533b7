package network

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// restoreLockTable is the table that keeps a VE's network namespace silent while its
// processes are restored.
const restoreLockTable = "vectl-restore-lock"

// LockNetns drops every packet that enters the network namespace at path from outside (its
// loopback stays open) until the returned function is called. A VE's restore needs it: its
// addresses are up before CRIU has put its TCP sockets back, and a peer's retransmission arriving in between would be answered with a
// reset (CRIU's own network lock, which it applies only to network namespaces it restores
// itself). The table is the namespace's own: it goes with the namespace in any case.
func LockNetns(path string) (func() error, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock the network of %s: %w", path, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock the network of %s: %w", path, err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: restoreLockTable})
	drop := nftables.ChainPolicyDrop
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: prio(-400), Policy: &drop})
	// Loopback stays open: CRIU connects the VE's own TCP connections over it.
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)}, // lo is 1 in every netns
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	if err := c.Flush(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock the network of %s: %w", path, err)
	}
	return func() error {
		defer unix.Close(fd)
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("unlock the network of %s: %w", path, err)
		}
		return nil
	}, nil
}
