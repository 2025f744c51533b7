package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/containerd/console"
)

// ErrNoConsole means a VE has no console to attach to (it runs without a monitor, or its
// monitor died).
var ErrNoConsole = errors.New("no console")

// ConsoleEscape is the key sequence that detaches vectl console, as in vzctl: Esc then '.'.
const ConsoleEscape = "\x1b."

// Console attaches the user's terminal to a running VE's console, held by its monitor, until
// the escape sequence Esc . is typed or the VE stops.
func (m *Manager) Console(ctx context.Context, ref string, in, out *os.File) error {
	id, err := m.resolve(ref)
	if err != nil {
		return err
	}
	if !m.populated(id) {
		return fmt.Errorf("console %s: %w", id, ErrNotRunning)
	}
	conn, err := net.Dial("unix", m.runFile(id, consoleSock))
	if err != nil {
		return fmt.Errorf("console %s: %w: the VE runs without a monitor (see %s)", id, ErrNoConsole, m.consoleLog(id))
	}
	defer conn.Close()
	if cur, err := console.ConsoleFromFile(in); err == nil {
		if err := cur.SetRaw(); err != nil {
			return err
		}
		defer cur.Reset()
	}
	fmt.Fprintf(out, "Attached to VE %s console (Esc . to detach)\r\n", id)
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(out, conn)
		done <- struct{}{}
	}()
	go func() {
		copyUntilEscape(conn, in)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	fmt.Fprintf(out, "\r\nDetached from VE %s console\r\n", id)
	return nil
}

// copyUntilEscape copies r to w until r ends or the escape sequence Esc . arrives. An Esc
// followed by anything else is passed on unchanged.
func copyUntilEscape(w io.Writer, r io.Reader) error {
	buf := make([]byte, 1024)
	pendingEsc := false
	for {
		n, err := r.Read(buf)
		out := make([]byte, 0, n+1)
		for _, b := range buf[:n] {
			switch {
			case pendingEsc && b == '.':
				if len(out) > 0 {
					w.Write(out)
				}
				return nil
			case pendingEsc:
				out = append(out, 0x1b)
				pendingEsc = false
				if b == 0x1b {
					pendingEsc = true
					continue
				}
				out = append(out, b)
			case b == 0x1b:
				pendingEsc = true
			default:
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}
