package resources

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReadHost describes the host for validating limits: online CPUs, NUMA nodes, and the
// highest open-files limit vectl can give (its own hard limit: it has no CAP_SYS_RESOURCE
// to go beyond).
func ReadHost() Host {
	online, _ := os.ReadFile("/sys/devices/system/cpu/online")
	h := Host{CPUs: countList(strings.TrimSpace(string(online))), Nodes: 1}
	if nodes, _ := filepath.Glob("/sys/devices/system/node/node[0-9]*"); len(nodes) > 0 {
		h.Nodes = len(nodes)
	}
	if h.CPUs == 0 {
		h.CPUs = 1
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		h.NoFileHi = rl.Max
	}
	return h
}

// countList counts the entries of a kernel list such as "0-3,6".
func countList(s string) int {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		n += b - a + 1
	}
	return n
}
