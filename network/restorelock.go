package network

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// restoreLockTable is the table that keeps a VE's network namespace silent while its
// processes are restored, and restoreLockSet the set whose elements open it.
const (
	restoreLockTable = "vectl-restore-lock"
	restoreLockSet   = "open"
)

// The lock has three steps because the kernel makes them cost differently: any nftables
// transaction that deletes or changes something waits for an RCU grace period (10 to 25 ms
// on this machine), one that only adds does not. So the lock is a table whose input chain
// drops every packet (but loopback's) whose protocol family is not in its set "open":
// LockNetns adds it, OpenNetns adds IPv4 and IPv6 to the set (an addition: the VE is
// reachable about a millisecond after its restore), and RemoveNetnsLock deletes the table
// later, off the restore's path.

// LockNetns drops every packet that enters the network namespace at path from outside (its
// loopback stays open) until OpenNetns. A VE's restore needs it: its addresses are up before
// CRIU has put its TCP sockets back, and a peer's retransmission arriving in between would
// be answered with a reset (CRIU's own network lock applies only to network namespaces it
// restores itself). The table is the namespace's own: it goes with the namespace in any case.
func LockNetns(path string) error {
	c, closeNS, err := nsConn(path)
	if err != nil {
		return fmt.Errorf("lock the network of %s: %w", path, err)
	}
	defer closeNS()
	t, set := restoreLock()
	c.AddTable(t)
	if err := c.AddSet(set, nil); err != nil {
		return fmt.Errorf("lock the network of %s: %w", path, err)
	}
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: prio(-400), Policy: &accept})
	// Loopback stays open: CRIU connects the VE's own TCP connections over it.
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)}, // lo is 1 in every netns
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("lock the network of %s: %w", path, err)
	}
	return nil
}

// OpenNetns lets packets into the network namespace at path again, if LockNetns closed it.
func OpenNetns(path string) error {
	c, closeNS, err := nsConn(path)
	if err != nil {
		return fmt.Errorf("unlock the network of %s: %w", path, err)
	}
	defer closeNS()
	_, set := restoreLock()
	if err := c.SetAddElements(set, []nftables.SetElement{{Key: []byte{unix.NFPROTO_IPV4}}, {Key: []byte{unix.NFPROTO_IPV6}}}); err != nil {
		return fmt.Errorf("unlock the network of %s: %w", path, err)
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unlock the network of %s: %w", path, err)
	}
	return nil
}

// RemoveNetnsLock deletes what LockNetns added to the network namespace at path, if it is
// there (which also opens it).
func RemoveNetnsLock(path string) error {
	c, closeNS, err := nsConn(path)
	if err != nil {
		return err
	}
	defer closeNS()
	t, _ := restoreLock()
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove the restore lock of %s: %w", path, err)
	}
	return nil
}

// restoreLock names the lock's table and its set "open".
func restoreLock() (*nftables.Table, *nftables.Set) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: restoreLockTable}
	return t, &nftables.Set{Table: t, Name: restoreLockSet, KeyType: nftables.TypeNFProto}
}

// nsConn is an nftables connection into the network namespace at path.
func nsConn(path string) (*nftables.Conn, func(), error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	return c, func() { unix.Close(fd) }, nil
}
