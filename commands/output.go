package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writeJSON renders v as indented JSON. Callers pass non-nil slices so that an empty list
// prints [] and never null.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table renders rows of text under a header with aligned columns.
type table struct {
	header []string
	right  []bool // right-align this column
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write prints the table; noHeader drops the header line (vzlist -H).
func (t *table) write(w io.Writer, noHeader bool) error {
	widths := make([]int, len(t.header))
	all := t.rows
	if !noHeader {
		all = append([][]string{t.header}, t.rows...)
	}
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range all {
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len(c))
			last := i == len(r)-1
			switch {
			case i < len(t.right) && t.right[i]:
				b.WriteString(pad + c)
			case last:
				b.WriteString(c)
			default:
				b.WriteString(c + pad)
			}
			if !last {
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// humanSize prints a byte count the way vzctl sizes are written (K, M, G, T; 1024-based).
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"K", "M", "G", "T", "P"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f%s", v, suffix)
	}
	return fmt.Sprintf("%.1f%s", v, suffix)
}

// isTerminal reports whether w is a terminal (a progress bar is for people, not scripts).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar returns a download progress reporter that redraws one line on w.
func progressBar(w io.Writer, name string) func(done, total int64) {
	start := time.Now()
	return func(done, total int64) {
		rate := float64(done) / max(time.Since(start).Seconds(), 0.001)
		if total <= 0 {
			fmt.Fprintf(w, "\r%s %s %s/s   ", name, humanSize(done), humanSize(int64(rate)))
			return
		}
		const width = 30
		n := int(min(done, total) * width / total)
		fmt.Fprintf(w, "\r%s [%s%s] %3d%% %s/%s %s/s   ", name, strings.Repeat("=", n), strings.Repeat(" ", width-n),
			min(done, total)*100/total, humanSize(done), humanSize(total), humanSize(int64(rate)))
	}
}
