package container

import (
	"errors"

	"github.com/vectl/vectl/container/layout"
)

// Sentinel errors of the VE domain. commands/exit.go maps each to a documented exit code;
// callers wrap them with the operation and the VE id.
var (
	ErrNotExist     = errors.New("VE does not exist")
	ErrExist        = errors.New("already exists")
	ErrInvalidID    = errors.New("invalid VE id")
	ErrInvalidValue = errors.New("invalid value")
	ErrRunning      = layout.ErrInUse // one error: a running VE's root is in use
	ErrNotRunning   = errors.New("VE is not running")
	ErrIncomplete   = errors.New("VE was not completely created")
	ErrMount        = layout.ErrMount
	ErrNoInit       = errors.New("VE has no init")
	ErrInUse        = errors.New("in use")
	ErrPermission   = errors.New("permission denied")
	// ErrNoTemplate means create was called without an OS template (exit 29, as vzctl).
	ErrNoTemplate = errors.New("OS template not specified")
	// ErrDisabled refuses to start a VE set --disabled yes (exit 105, as vzctl).
	ErrDisabled = errors.New("VE start disabled")
)
