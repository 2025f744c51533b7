package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// cmdError is a command that failed: its command line, status and the end of its output.
type cmdError struct {
	argv []string
	err  error
	out  string
}

func (e *cmdError) Error() string {
	out := strings.TrimSpace(e.out)
	if len(out) > 600 {
		out = "..." + out[len(out)-600:]
	}
	out = strings.ReplaceAll(out, "\n", " | ")
	return fmt.Sprintf("%s: %v: %s", shortCmd(e.argv), e.err, out)
}

func (e *cmdError) Unwrap() error { return e.err }

// exitCode returns the exit status of a failed command, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func shortCmd(argv []string) string {
	s := strings.Join(argv, " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// command makes a command with stdin /dev/null in its own process group: a Ctrl-C on the
// terminal then reaches only the harness, which lets the current command finish and cleans up.
func command(argv []string) *exec.Cmd {
	c := exec.Command(argv[0], argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if acctRunFD >= 0 {
		// Born in the bench's cgroup, so that its cost is counted (acct.go).
		c.SysProcAttr.UseCgroupFD, c.SysProcAttr.CgroupFD = true, acctRunFD
	}
	return c
}

// timed runs argv and returns how long it took, from just before fork to its exit. Its
// output goes to the command log, a plain file, so that nothing (no pipe, no copying
// goroutine) sits between the harness and the command, and so that a detached container
// that inherits it never holds up the wait.
func (b *bench) timed(argv ...string) (time.Duration, error) {
	off, _ := b.cmdLog.Seek(0, io.SeekEnd)
	fmt.Fprintf(b.cmdLog, "$ %s\n", strings.Join(argv, " "))
	c := command(argv)
	c.Stdout, c.Stderr = b.cmdLog, b.cmdLog
	end := b.span() // the command's cost, read outside the timed part
	start := time.Now()
	err := c.Run()
	d := time.Since(start)
	end()
	if err != nil {
		return d, &cmdError{argv: argv, err: err, out: b.logSince(off)}
	}
	return d, nil
}

// span starts counting the cost of an operation timed around several commands, some of
// them untimed, and the waits between them (a boot polled until systemd says running); the
// function it returns ends the span and adds its cost to the pass's pending cost. Every
// timed command is a span of its own; spans inside a span add nothing of their own.
func (b *bench) span() (end func()) {
	if b.acct == nil {
		return func() {}
	}
	b.spans++
	before := b.acct.read()
	return func() {
		b.spans--
		if b.spans == 0 {
			b.pending = b.pending.add(b.acct.read().sub(before))
			b.pendingN++
		}
	}
}

// sh runs argv untimed and returns its output (stdout and stderr together).
func (b *bench) sh(argv ...string) (string, error) {
	out, errOut, err := b.capture(argv)
	if err != nil {
		return out + errOut, err
	}
	return out + errOut, nil
}

// stdout runs argv untimed and returns its standard output only.
func (b *bench) stdout(argv ...string) (string, error) {
	out, _, err := b.capture(argv)
	return out, err
}

// capture runs argv with its output in scratch files rather than pipes: a container started
// detached inherits them, and a pipe would then never reach end of file.
func (b *bench) capture(argv []string) (string, string, error) {
	fmt.Fprintf(b.cmdLog, "$ %s\n", strings.Join(argv, " "))
	files := make([]*os.File, 2)
	for i := range files {
		f, err := os.CreateTemp(b.work, "out-")
		if err != nil {
			return "", "", err
		}
		os.Remove(f.Name())
		defer f.Close()
		files[i] = f
	}
	c := command(argv)
	c.Stdout, c.Stderr = files[0], files[1]
	err := c.Run()
	var res [2]string
	for i, f := range files {
		f.Seek(0, io.SeekStart)
		data, _ := io.ReadAll(f)
		res[i] = string(data)
	}
	b.cmdLog.WriteString(res[0] + res[1])
	if err != nil {
		return res[0], res[1], &cmdError{argv: argv, err: err, out: res[0] + res[1]}
	}
	return res[0], res[1], nil
}

func (b *bench) logSince(off int64) string {
	end, _ := b.cmdLog.Seek(0, io.SeekEnd)
	if end-off > 4096 {
		off = end - 4096
	}
	buf := make([]byte, end-off)
	n, _ := b.cmdLog.ReadAt(buf, off)
	return string(buf[:n])
}

// recorder stores one timing of a measured pass under a key such as "start/runc", and with
// it the cost of the timed commands run since the pass's previous recording (acct.go).
type recorder func(key string, d time.Duration)

// variant is one contender of an interleaved comparison. pass does one iteration: its
// untimed preparation, the timed part (recorded through rec) and its untimed cleanup.
type variant struct {
	name   string
	vectl  bool // a failure is vectl's: the run exits non-zero
	passes int  // at most this many measured passes (0: all)
	pass   func(p int, rec recorder) error
	err    error
}

// interleave runs the variants in turn, A B C A B C ..., first one unrecorded warm-up pass,
// then passes measured ones. A variant that fails is dropped for the remaining passes and its
// error kept; the others go on. It stops early when the run is cancelled or out of time.
func (b *bench) interleave(passes int, vs ...*variant) {
	for p := -1; p < passes; p++ {
		for _, v := range vs {
			if v == nil || v.err != nil || (v.passes > 0 && p >= v.passes) {
				continue
			}
			if b.ctx.Err() != nil {
				return
			}
			b.pending, b.pendingN = cost{}, 0
			rec := func(key string, d time.Duration) {
				if p >= 0 {
					b.samples[key] = append(b.samples[key], ms(d))
					if b.pendingN > 0 {
						b.costs[key] = append(b.costs[key], b.pending)
					}
				}
				b.pending, b.pendingN = cost{}, 0
			}
			if err := v.pass(p, rec); err != nil {
				v.err = err
				b.note("%s: not measured: %v", v.name, err)
				b.failed = b.failed || v.vectl
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// record adds one measured value (in the key's own unit) outside interleave.
func (b *bench) record(key string, v float64) {
	b.samples[key] = append(b.samples[key], v)
}

// Dist summarises the samples of one measurement.
type Dist struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P25    float64 `json:"p25"`
	P75    float64 `json:"p75"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func distOf(xs []float64) *Dist {
	if len(xs) == 0 {
		return nil
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return &Dist{N: len(s), Median: quantile(s, 0.5), P25: quantile(s, 0.25), P75: quantile(s, 0.75),
		Min: s[0], Max: s[len(s)-1]}
}

// quantile interpolates linearly between the closest ranks of sorted samples.
func quantile(s []float64, q float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// waitFor polls cond every interval until it is true or timeout passes.
func waitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// pidAlive tells whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}
