package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

// checkLimit is how much a row's CPU time may grow before bench-check names it.
const checkLimit = 1.10

// checkResults compares the vectl CPU medians of a new results.json with an older one
// (make bench-check) and names every row whose CPU time grew by more than 10%. It returns
// the exit status: 0 when none did, 1 when some did, 2 when a file cannot be read.
func checkResults(oldPath, newPath string, w io.Writer) int {
	old, err := readResults(oldPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-check:", err)
		return 2
	}
	cur, err := readResults(newPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-check:", err)
		return 2
	}
	before := map[string]float64{}
	for _, r := range old.Rows {
		if r.Cost != nil && r.Cost.CPU != nil {
			before[r.Group+"\x00"+r.Name] = r.Cost.CPU.Median
		}
	}
	seen := map[string]bool{}
	var grew, compared, fresh []string
	for _, r := range cur.Rows {
		k := r.Group + "\x00" + r.Name
		if seen[k] || r.Cost == nil || r.Cost.CPU == nil {
			continue // the same vectl samples against another peer, or no cost
		}
		seen[k] = true
		was, ok := before[k]
		if !ok || was <= 0 {
			fresh = append(fresh, fmt.Sprintf("%s: %s (%.2f ms CPU)", r.Group, r.Name, r.Cost.CPU.Median))
			continue
		}
		now := r.Cost.CPU.Median
		line := fmt.Sprintf("%s: %s: CPU %.2f ms -> %.2f ms (%+.0f%%)", r.Group, r.Name, was, now, (now/was-1)*100)
		if now > was*checkLimit {
			grew = append(grew, line)
		} else {
			compared = append(compared, line)
		}
	}
	sort.Strings(fresh)
	for _, l := range compared {
		fmt.Fprintln(w, "ok    "+l)
	}
	for _, l := range fresh {
		fmt.Fprintln(w, "new   "+l+": no CPU figure in "+oldPath)
	}
	for _, l := range grew {
		fmt.Fprintln(w, "GREW  "+l)
	}
	if len(compared)+len(grew) == 0 {
		fmt.Fprintf(os.Stderr, "bench-check: no row of %s has a CPU figure in %s to compare with\n", newPath, oldPath)
		return 1
	}
	if len(grew) > 0 {
		fmt.Fprintf(os.Stderr, "bench-check: %d row(s) grew by more than %.0f%% in CPU time\n", len(grew), (checkLimit-1)*100)
		return 1
	}
	fmt.Fprintf(w, "bench-check: %d row(s) compared, none grew by more than %.0f%% in CPU time\n", len(compared), (checkLimit-1)*100)
	return 0
}

func readResults(path string) (*results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r results
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}
