package main

import (
	"fmt"
	"math"
	"strings"
)

// Row is one line of the results: a vectl measurement, optionally a peer's, their ratio and
// the target it is held to.
type Row struct {
	Group   string  `json:"group"`
	Name    string  `json:"name"`
	Command string  `json:"command"` // what was timed on vectl's side
	Unit    string  `json:"unit"`
	Value   *Dist   `json:"value,omitempty"`
	Peer    string  `json:"peer,omitempty"`
	PeerVal *Dist   `json:"peer_value,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"` // median / peer median
	Delta   float64 `json:"delta,omitempty"` // median - peer median (difference targets)
	Target  *Target `json:"target,omitempty"`
	Status  string  `json:"status,omitempty"` // PASS, MISS, or N/A when not measured
	// Score is how much of its target the row uses (≤ 1 meets it); it is what the chart shows.
	Score float64 `json:"score,omitempty"`
	Note  string  `json:"note,omitempty"`
	// Cost and PeerCost are what the samples cost (acct.go); CPURatio is the ratio of their
	// CPU medians, and CPUStatus holds it to a ratio target as Status does the wall time.
	Cost      *CostDist `json:"cost,omitempty"`
	PeerCost  *CostDist `json:"peer_cost,omitempty"`
	CPURatio  float64   `json:"cpu_ratio,omitempty"`
	CPUStatus string    `json:"cpu_status,omitempty"`
}

// CostDist summarises the costs of one measurement's samples.
type CostDist struct {
	CPU    *Dist `json:"cpu_ms"`    // user + system, every process below vectl-bench
	User   *Dist `json:"user_ms"`   //
	Sys    *Dist `json:"system_ms"` //
	Faults *Dist `json:"page_faults"`
	Execs  *Dist `json:"execs"` // programs executed
	Forks  *Dist `json:"forks"` // processes and threads created
}

func costDistOf(cs []cost) *CostDist {
	if len(cs) == 0 {
		return nil
	}
	pick := func(f func(cost) float64) *Dist {
		xs := make([]float64, len(cs))
		for i, c := range cs {
			xs[i] = f(c)
		}
		return distOf(xs)
	}
	return &CostDist{CPU: pick(func(c cost) float64 { return c.CPU }), User: pick(func(c cost) float64 { return c.User }),
		Sys: pick(func(c cost) float64 { return c.Sys }), Faults: pick(func(c cost) float64 { return c.Faults }),
		Execs: pick(func(c cost) float64 { return c.Execs }), Forks: pick(func(c cost) float64 { return c.Forks })}
}

// Target is a goal a measurement is held to.
type Target struct {
	Kind  string  `json:"kind"` // ratio<=, ratio>=, value<=, delta<=
	Limit float64 `json:"limit"`
	// CPULimit, when set, is what a ratio<= target holds the CPU ratio to instead of Limit:
	// for a peer whose wall time includes a sleep, which costs no CPU.
	CPULimit float64 `json:"cpu_limit,omitempty"`
	Text     string  `json:"text"`
	Label    string  `json:"label"` // short name in the chart
}

// cpu sets the target's CPULimit.
func (t *Target) cpu(x float64) *Target {
	t.CPULimit = x
	return t
}

// as names the target in the chart.
func (t *Target) as(label string) *Target {
	t.Label = label
	return t
}

func ratioMax(x float64) *Target {
	return &Target{Kind: "ratio<=", Limit: x, Text: "≤ " + ratioText(x)}
}

func ratioMin(x float64) *Target {
	return &Target{Kind: "ratio>=", Limit: x, Text: "≥ " + ratioText(x)}
}

// ratioText shows a target ratio with one decimal, or two where it has them (1.05x).
func ratioText(x float64) string {
	if math.Abs(x*10-math.Round(x*10)) > 1e-9 {
		return fmt.Sprintf("%.2fx", x)
	}
	return fmt.Sprintf("%.1fx", x)
}

func valueMax(x float64, unit string) *Target {
	return &Target{Kind: "value<=", Limit: x, Text: fmt.Sprintf("≤ %s %s", trimFloat(x), unit)}
}

func deltaMax(x float64, unit string) *Target {
	return &Target{Kind: "delta<=", Limit: x, Text: fmt.Sprintf("≤ +%s %s", trimFloat(x), unit)}
}

func trimFloat(x float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", x), "0"), ".")
}

// cmp describes a row to make from recorded samples.
type cmp struct {
	group, name string
	key         string // vectl's samples
	command     string
	peerKey     string // the peer's samples, or ""
	peer        string
	unit        string // default ms
	target      *Target
	note        string
}

// compare adds a row from the samples recorded under c.key and c.peerKey.
func (b *bench) compare(c cmp) {
	r := Row{Group: c.group, Name: c.name, Command: c.command, Unit: c.unit, Peer: c.peer,
		Target: c.target, Note: c.note}
	if r.Unit == "" {
		r.Unit = "ms"
	}
	r.Value = distOf(b.samples[c.key])
	r.Cost = costDistOf(b.costs[c.key])
	if c.peerKey != "" {
		r.PeerVal = distOf(b.samples[c.peerKey])
		r.PeerCost = costDistOf(b.costs[c.peerKey])
	}
	if r.Cost != nil && r.PeerCost != nil && r.PeerCost.CPU.Median > 0 {
		r.CPURatio = r.Cost.CPU.Median / r.PeerCost.CPU.Median
		if t := r.Target; t != nil && t.Kind == "ratio<=" {
			limit := t.Limit
			if t.CPULimit != 0 {
				limit = t.CPULimit
			}
			r.CPUStatus = "MISS"
			if r.CPURatio <= limit {
				r.CPUStatus = "PASS"
			}
		}
	}
	var missing []string
	if r.Value == nil {
		missing = append(missing, "vectl")
	}
	if c.peerKey != "" && r.PeerVal == nil {
		missing = append(missing, c.peer)
	}
	if r.Value != nil && r.PeerVal != nil {
		if r.PeerVal.Median != 0 {
			r.Ratio = r.Value.Median / r.PeerVal.Median
		}
		r.Delta = r.Value.Median - r.PeerVal.Median
	}
	if len(missing) > 0 {
		if len(missing) == 1 && missing[0] != "vectl" && r.Target != nil && r.Target.Kind == "value<=" {
			// An absolute target does not need the peer.
			r.Note = join(r.Note, missing[0]+" not measured (see notes)")
		} else {
			r.Note = join(r.Note, strings.Join(missing, ", ")+" not measured (see notes)")
			if r.Target != nil {
				r.Status = "N/A"
			}
			b.rows = append(b.rows, r)
			return
		}
	}
	if t := r.Target; t != nil {
		switch t.Kind {
		case "ratio<=":
			r.Score = r.Ratio / t.Limit
		case "ratio>=":
			if r.Ratio > 0 {
				r.Score = t.Limit / r.Ratio
			} else {
				r.Score = math.Inf(1)
			}
		case "value<=":
			r.Score = r.Value.Median / t.Limit
		case "delta<=":
			r.Score = r.Delta / t.Limit
		}
		r.Status = "MISS"
		if r.Score <= 1 {
			r.Status = "PASS"
		}
	}
	b.rows = append(b.rows, r)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "; " + b
}

// fmtVal formats a value in a unit: milliseconds with a precision that suits their size.
func fmtVal(x float64, unit string) string {
	switch {
	case unit == "x":
		return fmt.Sprintf("%.2fx", x)
	case math.Abs(x) >= 100:
		return fmt.Sprintf("%.0f %s", x, unit)
	case math.Abs(x) >= 10:
		return fmt.Sprintf("%.1f %s", x, unit)
	}
	return fmt.Sprintf("%.2f %s", x, unit)
}

// fmtDist is "median (p25–p75)", or the median alone for a single sample.
func fmtDist(d *Dist, unit string) string {
	if d == nil {
		return "—"
	}
	if d.N == 1 {
		return fmtVal(d.Median, unit)
	}
	lo, hi := fmtVal(d.P25, unit), fmtVal(d.P75, unit)
	return fmt.Sprintf("%s (%s–%s)", fmtVal(d.Median, unit), strings.TrimSuffix(lo, " "+unit), hi)
}

// summary is the one-line form of a row printed at the end of a run.
func (r Row) summary() string {
	st := r.Status
	if st == "" {
		st = "-"
	}
	s := fmt.Sprintf("%-4s %s: vectl %s", st, r.Name, fmtDist(r.Value, r.Unit))
	if r.Peer != "" {
		s += fmt.Sprintf(" vs %s %s", r.Peer, fmtDist(r.PeerVal, r.Unit))
		if r.Ratio != 0 {
			s += " = " + fmtRatio(r.Ratio)
		}
	}
	if r.Target != nil {
		if r.Target.Kind == "delta<=" && r.Value != nil && r.PeerVal != nil {
			s += fmt.Sprintf(" (difference %+.1f %s)", r.Delta, r.Unit)
		}
		s += " [target " + r.Target.Text + "]"
	}
	if r.Cost != nil {
		s += fmt.Sprintf(" {CPU %s, %s faults, %s execs", fmtVal(r.Cost.CPU.Median, "ms"), fmtCount(r.Cost.Faults), fmtCount(r.Cost.Execs))
		if r.PeerCost != nil {
			s += fmt.Sprintf("; peer CPU %s, %s faults, %s execs", fmtVal(r.PeerCost.CPU.Median, "ms"),
				fmtCount(r.PeerCost.Faults), fmtCount(r.PeerCost.Execs))
		}
		if r.CPUStatus != "" {
			s += fmt.Sprintf("; CPU ratio %s %s", fmtRatio(r.CPURatio), r.CPUStatus)
		}
		s += "}"
	}
	if r.Note != "" {
		s += " — " + r.Note
	}
	return s
}

// fmtRatio shows small ratios with enough digits to tell them from zero.
func fmtRatio(x float64) string {
	if math.Abs(x) < 0.1 {
		return fmt.Sprintf("%.3fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}
