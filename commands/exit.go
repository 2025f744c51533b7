package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// errUsage marks command line syntax errors (exit 20).
var errUsage = errors.New("invalid command line")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errUsage)
}

// statusError passes a child's exit status through without a message (exec).
type statusError struct{ code int }

func (e statusError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode is one row of the exit status table.
type exitCode struct {
	code    int
	meaning string
	errs    []error
}

// exitCodes is the one table of vectl's exit statuses. The numbers follow vzctl's documented
// table wherever the meaning is shared, so that existing scripts keep working.
var exitCodes = []exitCode{
	{0, "success", nil},
	{3, "system error (anything not listed here)", nil},
	{9, "VE or template locked by another vectl invocation (see --lock-timeout)", []error{store.ErrLocked}},
	{12, "permission denied: vectl must run as root", []error{container.ErrPermission}},
	{14, "VE does not exist", []error{container.ErrNotExist}},
	{16, "checkpoint failed, or no usable criu (>= 4.1) installed", []error{container.ErrCheckpoint}},
	{17, "restore failed: no dump, a stale or foreign dump, or CRIU could not restore it", []error{container.ErrRestore}},
	{20, "invalid command line syntax (also: a next-start setting without --save)", []error{errUsage, container.ErrNeedSave}},
	{21, "invalid value for a parameter", []error{container.ErrInvalidValue, container.ErrInvalidID,
		template.ErrInvalidName, template.ErrUnsafeEntry, network.ErrInvalid, resources.ErrInvalid}},
	{29, "OS template not specified", []error{container.ErrNoTemplate}},
	{31, "VE is not running (or is frozen)", []error{container.ErrNotRunning, container.ErrFrozen}},
	{32, "VE is running (stop it first)", []error{container.ErrRunning}},
	{33, "unable to stop the VE", []error{container.ErrStop}},
	{43, "VE private area missing or incomplete (destroy it and create it again)", []error{container.ErrIncomplete}},
	{44, "VE, name or template already exists", []error{container.ErrExist, template.ErrExist}},
	{46, "not enough disk space (the VE's data does not fit the disk size asked for)", []error{container.ErrDiskSpace}},
	{47, "broken VE: no /sbin/init in its template", []error{container.ErrNoInit}},
	{50, "unable to mount the VE's root", []error{container.ErrMount}},
	{78, "IP address already in use by another VE", []error{container.ErrIPInUse}},
	{91, "OS template not found", []error{template.ErrNotFound, template.ErrNoOffer}},
	{92, "resource profile not found", []error{resources.ErrNoProfile}},
	{93, "OS template in use by a VE", []error{container.ErrInUse}},
	{94, "OS template does not match its archive, checksum or signature (template verify, download)",
		[]error{template.ErrModified, template.ErrVerify}},
	{105, "VE start disabled (set --disabled yes): start --force starts it", []error{container.ErrDisabled}},
	{133, "start --wait: the VE did not finish booting in time", []error{container.ErrWait}},
	{156, "snapshot or clone failed (nothing of it is left)", []error{container.ErrSnapshot}},
	{158, "snapshot-delete failed, or no such snapshot to delete", []error{container.ErrSnapshotDelete}},
	{159, "snapshot-switch failed, or no such snapshot to switch to (the VE is as it was)", []error{container.ErrSnapshotSwitch}},
	{160, "no such snapshot (see snapshot-list)", []error{container.ErrNoSnapshot}},
	{161, "the VE has snapshots: destroy --force removes them with it", []error{container.ErrHasSnapshots}},
	{163, "backup or backup-restore failed, or the archive is not a sound vectl backup (sha256)", []error{container.ErrBackup}},
	{130, "interrupted (SIGINT)", []error{context.Canceled}},
}

// exitStatus maps an error to its exit status and the one-line message to print.
func exitStatus(err error) (int, string) {
	var se statusError
	if errors.As(err, &se) {
		return se.code, ""
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	// migrate's statuses are vzmigrate's, set where the failure is known.
	var me *container.MigrateError
	if errors.As(err, &me) {
		return me.Code, msg
	}
	for _, row := range exitCodes {
		for _, e := range row.errs {
			if errors.Is(err, e) {
				return row.code, msg
			}
		}
	}
	return 3, msg
}

func writeExitCodes(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tMEANING")
	for _, row := range exitCodes {
		fmt.Fprintf(tw, "%d\t%s\n", row.code, row.meaning)
	}
	fmt.Fprintln(tw, "N\texec: the command's own exit status (128+N when killed by signal N)")
	return tw.Flush()
}

func exitCodesText() string {
	var b strings.Builder
	writeExitCodes(&b)
	return b.String()
}

func exitCodesCommand() *cli.Command {
	return &cli.Command{
		Name:        "exit-codes",
		Usage:       "print the table of exit statuses (also: vectl help exit-codes)",
		Description: "vectl's exit statuses, shared with vzctl where the meaning is the same.",
		Action: func(c *cli.Context) error {
			return writeExitCodes(c.App.Writer)
		},
	}
}
