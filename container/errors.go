package container

import "errors"

// Sentinel errors of the VE domain. commands/exit.go maps each to a documented exit code;
// callers wrap them with the operation and the VE id.
var (
	ErrNotExist     = errors.New("VE does not exist")
	ErrExist        = errors.New("already exists")
	ErrInvalidID    = errors.New("invalid VE id")
	ErrInvalidValue = errors.New("invalid value")
	ErrRunning      = errors.New("VE is running")
	ErrNotRunning   = errors.New("VE is not running")
	ErrIncomplete   = errors.New("VE was not completely created")
	ErrMount        = errors.New("mount failed")
	ErrNoInit       = errors.New("VE has no init")
	ErrInUse        = errors.New("in use")
	ErrPermission   = errors.New("permission denied")
)
