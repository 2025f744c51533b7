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
// (make bench-check) and names every row whose CPU time grew by more than 10%. On a shared
// machine the CPU time of the same work moves too (a slower hour makes every contender's
// grow), so a row measured against a peer whose CPU grew as much, its CPU ratio to that peer
// within 10% of the old one, is named as the machine's and does not fail the check. It
// returns the exit status: 0 when no row grew against its peer (or, without a peer, in
// absolute terms), 1 when some did, 2 when a file cannot be read.
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
	type fig struct{ cpu, ratio float64 }
	key := func(r Row) string { return r.Group + "\x00" + r.Name + "\x00" + r.Peer }
	before := map[string]fig{}
	for _, r := range old.Rows {
		if r.Cost != nil && r.Cost.CPU != nil {
			before[key(r)] = fig{r.Cost.CPU.Median, r.CPURatio}
		}
	}
	seen := map[string]bool{}
	var grew, host, compared, fresh []string
	for _, r := range cur.Rows {
		name := r.Group + "\x00" + r.Name
		if seen[name] || r.Cost == nil || r.Cost.CPU == nil {
			continue // the same vectl samples against another peer, or no cost
		}
		was, ok := before[key(r)]
		if !ok || was.cpu <= 0 {
			continue // tried with the next peer's row, if any
		}
		seen[name] = true
		now := r.Cost.CPU.Median
		line := fmt.Sprintf("%s: %s: CPU %.2f ms -> %.2f ms (%+.0f%%)", r.Group, r.Name, was.cpu, now, (now/was.cpu-1)*100)
		switch {
		case now <= was.cpu*checkLimit:
			compared = append(compared, line)
		case was.ratio > 0 && r.CPURatio > 0 && r.CPURatio <= was.ratio*checkLimit:
			host = append(host, fmt.Sprintf("%s; against %s %.2fx -> %.2fx", line, r.Peer, was.ratio, r.CPURatio))
		default:
			if was.ratio > 0 && r.CPURatio > 0 {
				line += fmt.Sprintf("; against %s %.2fx -> %.2fx", r.Peer, was.ratio, r.CPURatio)
			}
			grew = append(grew, line)
		}
	}
	for _, r := range cur.Rows {
		if name := r.Group + "\x00" + r.Name; !seen[name] && r.Cost != nil && r.Cost.CPU != nil {
			seen[name] = true
			fresh = append(fresh, fmt.Sprintf("%s: %s (%.2f ms CPU)", r.Group, r.Name, r.Cost.CPU.Median))
		}
	}
	sort.Strings(fresh)
	for _, l := range compared {
		fmt.Fprintln(w, "ok    "+l)
	}
	for _, l := range fresh {
		fmt.Fprintln(w, "new   "+l+": no CPU figure in "+oldPath)
	}
	for _, l := range host {
		fmt.Fprintln(w, "HOST  "+l+" (the peer grew as much: the machine, not vectl)")
	}
	for _, l := range grew {
		fmt.Fprintln(w, "GREW  "+l)
	}
	if len(compared)+len(host)+len(grew) == 0 {
		fmt.Fprintf(os.Stderr, "bench-check: no row of %s has a CPU figure in %s to compare with\n", newPath, oldPath)
		return 1
	}
	if len(grew) > 0 {
		fmt.Fprintf(os.Stderr, "bench-check: %d row(s) grew by more than %.0f%% in CPU time\n", len(grew), (checkLimit-1)*100)
		return 1
	}
	fmt.Fprintf(w, "bench-check: %d row(s) compared, none grew by more than %.0f%% in CPU time against its peer\n",
		len(compared)+len(host), (checkLimit-1)*100)
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
