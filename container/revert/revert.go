// Package revert is vectl's one undo helper for multi-step set-ups (incus's revert pattern):
// every step registers its undo, and the undo steps run in reverse order when the set-up
// fails. It is a leaf package that container, template and network may all use; it knows
// nothing of what the steps do.
package revert

import "errors"

// Reverter collects undo steps while a multi-step set-up runs: defer r.Fail(&err) right
// after declaring it, Add an undo after every step that succeeded, and the undo steps run in
// reverse order if the function returns an error. The zero value is ready to use.
type Reverter struct {
	undo []func() error
}

// Add registers the undo of a step that has just succeeded.
func (r *Reverter) Add(f func() error) { r.undo = append(r.undo, f) }

// Fail runs the undo steps, newest first, when *err is set, and joins their errors into it.
// Every undo step runs even when an earlier one fails.
func (r *Reverter) Fail(err *error) {
	if *err == nil {
		return
	}
	errs := []error{*err}
	for i := len(r.undo) - 1; i >= 0; i-- {
		if uerr := r.undo[i](); uerr != nil {
			errs = append(errs, uerr)
		}
	}
	*err = errors.Join(errs...)
}
