package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0\n": {0}, "0-1\n": {0, 1}, "0-2,5,7-8": {0, 1, 2, 5, 7, 8}} {
		got, err := parseCPUList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a-1", "0-x"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) accepted", bad)
		}
	}
}

func TestCostArithmetic(t *testing.T) {
	a := cost{CPU: 10, User: 4, Sys: 6, Faults: 100, Execs: 3, Forks: 5}
	b := cost{CPU: 2, User: 1, Sys: 1, Faults: 10, Execs: 1, Forks: 1}
	if got := a.add(b).sub(b); got != a {
		t.Errorf("add then sub = %+v, want %+v", got, a)
	}
	d := costDistOf([]cost{a, b, a})
	if d.CPU.Median != 10 || d.Faults.Median != 100 || d.Execs.N != 3 {
		t.Errorf("costDistOf medians: %+v %+v", d.CPU, d.Faults)
	}
}

// writeResultsFile writes a results.json with, per name, a vectl row without a peer (CPU
// median ms) and the same samples against a second peer: compared once.
func writeResultsFile(t *testing.T, name string, cpu map[string]float64) string {
	t.Helper()
	var res results
	for n, ms := range cpu {
		res.Rows = append(res.Rows, Row{Group: "g", Name: n, Cost: &CostDist{CPU: distOf([]float64{ms})}})
		res.Rows = append(res.Rows, Row{Group: "g", Name: n, Peer: "other", Cost: &CostDist{CPU: distOf([]float64{ms})}})
	}
	return writeRows(t, name, res)
}

func writeRows(t *testing.T, name string, res results) string {
	t.Helper()
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckResults(t *testing.T) {
	old := writeResultsFile(t, "old.json", map[string]float64{"start": 100, "exec": 30, "stop": 40})
	var out strings.Builder
	same := writeResultsFile(t, "same.json", map[string]float64{"start": 109, "exec": 25, "stop": 40, "new row": 5})
	if code := checkResults(old, same, &out); code != 0 {
		t.Fatalf("within 10%%: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "new   g: new row") || strings.Count(out.String(), "ok    ") != 3 {
		t.Errorf("report:\n%s", out.String())
	}
	out.Reset()
	worse := writeResultsFile(t, "worse.json", map[string]float64{"start": 111, "exec": 30, "stop": 40})
	if code := checkResults(old, worse, &out); code != 1 {
		t.Fatalf("start grew 11%%: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "GREW  g: start: CPU 100.00 ms -> 111.00 ms (+11%)") {
		t.Errorf("report does not name the row:\n%s", out.String())
	}
	if code := checkResults(old, filepath.Join(t.TempDir(), "missing.json"), &out); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}
	none := writeResultsFile(t, "none.json", map[string]float64{})
	if code := checkResults(none, same, &out); code != 1 {
		t.Errorf("nothing to compare with: exit %d, want 1", code)
	}
}

// A row whose peer's CPU grew as much is the machine's: named, not failed.
func TestCheckResultsAgainstPeer(t *testing.T) {
	row := func(cpu, peer float64) Row {
		return Row{Group: "start", Name: "start", Peer: "crun", Cost: &CostDist{CPU: distOf([]float64{cpu})},
			PeerCost: &CostDist{CPU: distOf([]float64{peer})}, CPURatio: cpu / peer}
	}
	old := writeRows(t, "old.json", results{Rows: []Row{row(100, 50)}})
	slower := writeRows(t, "slower.json", results{Rows: []Row{row(120, 58)}})
	var out strings.Builder
	if code := checkResults(old, slower, &out); code != 0 {
		t.Fatalf("both grew by 20%%: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "HOST  start: start: CPU 100.00 ms -> 120.00 ms (+20%); against crun 2.00x -> 2.07x") {
		t.Errorf("report:\n%s", out.String())
	}
	out.Reset()
	worse := writeRows(t, "worse.json", results{Rows: []Row{row(120, 50)}})
	if code := checkResults(old, worse, &out); code != 1 || !strings.Contains(out.String(), "GREW  start: start:") {
		t.Errorf("vectl alone grew by 20%%: exit %d\n%s", code, out.String())
	}
}

// TestCPULimit: a ratio target holds the CPU ratio to its own limit, or to CPULimit where
// the wall-time limit reflects a peer's sleep (stop against runc's delete -f).
func TestCPULimit(t *testing.T) {
	for _, tc := range []struct {
		target *Target
		want   string
	}{{ratioMax(0.5), "MISS"}, {ratioMax(0.5).cpu(1.0), "PASS"}, {ratioMax(1.0).cpu(0.8), "MISS"}} {
		b := &bench{samples: map[string][]float64{"v": {10}, "p": {100}},
			costs: map[string][]cost{"v": {{CPU: 9}}, "p": {{CPU: 10}}}}
		b.compare(cmp{group: "g", name: "row", key: "v", peerKey: "p", peer: "peer", target: tc.target})
		if len(b.rows) != 1 || b.rows[0].CPUStatus != tc.want {
			t.Errorf("target %+v: rows %+v, want CPU %s", tc.target, b.rows, tc.want)
		}
	}
}
