package resources

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Device is a block device (major:minor) that I/O limits apply to: the one holding the VE's
// root filesystem.
type Device struct{ Major, Minor int64 }

// Apply writes the limits into OCI resources (the devices section is left alone). Every
// controlled knob gets an explicit value, "no limit" included, so that applying the result
// to a running VE also lifts limits that were removed. io may be nil when no I/O limit is set
// or the VE's block device is unknown.
func (l Limits) Apply(r *specs.LinuxResources, h Host, io *Device) error {
	shares := l.Shares()
	if shares == 0 {
		shares = 1024
	}
	quota, period := l.Quota()
	cpus, mems := allOf(h.CPUs), allOf(max(h.Nodes, 1))
	if l.CPUMask != "" && l.CPUMask != "all" {
		cpus = l.CPUMask
	}
	if l.NodeMask != "" && l.NodeMask != "all" {
		mems = l.NodeMask
	}
	r.CPU = &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: cpus, Mems: mems}

	// vzctl's vswap: ram is the memory limit, swap what may be swapped on top of it. With ram
	// set and swap not, the VE gets no swap.
	mem, memsw := Unlimited, Unlimited
	if l.RAM != nil && *l.RAM != Unlimited {
		mem = *l.RAM
		memsw = mem
		if l.Swap != nil {
			if *l.Swap == Unlimited {
				memsw = Unlimited
			} else {
				memsw = mem + *l.Swap
			}
		}
	} else if l.Swap != nil && *l.Swap != Unlimited {
		return fmt.Errorf("%w: --swap needs --ram (swap is what may be swapped on top of ram)", ErrInvalid)
	}
	r.Memory = &specs.LinuxMemory{Limit: &mem, Swap: &memsw}

	pids := Unlimited
	if l.NumProc != nil {
		pids = *l.NumProc
	}
	r.Pids = &specs.LinuxPids{Limit: &pids}

	bio := &specs.LinuxBlockIO{}
	if w := l.BlkioWeight(); w > 0 {
		bio.Weight = &w
	}
	if io != nil {
		rate := func(v *int64) []specs.LinuxThrottleDevice {
			// Rate 0 removes the device's throttle: that is how a lifted limit is applied live.
			var n uint64
			if v != nil && *v > 0 {
				n = uint64(*v)
			}
			d := specs.LinuxThrottleDevice{Rate: n}
			d.Major, d.Minor = io.Major, io.Minor
			return []specs.LinuxThrottleDevice{d}
		}
		bio.ThrottleReadBpsDevice, bio.ThrottleWriteBpsDevice = rate(l.IOLimit), rate(l.IOLimit)
		bio.ThrottleReadIOPSDevice, bio.ThrottleWriteIOPSDevice = rate(l.IOPSLimit), rate(l.IOPSLimit)
	} else if l.IOLimit != nil && *l.IOLimit > 0 || l.IOPSLimit != nil && *l.IOPSLimit > 0 {
		return fmt.Errorf("%w: --iolimit/--iopslimit: the block device of the VE's root is unknown", ErrInvalid)
	}
	r.BlockIO = bio
	return nil
}

func allOf(n int) string {
	if n <= 1 {
		return "0"
	}
	return fmt.Sprintf("0-%d", n-1)
}
