package container

import "errors"

// reverter collects undo steps while a multi-step setup runs (incus's revert pattern):
// defer r.fail(&err) right after creating it, add an undo after every step, and the undo
// steps run in reverse order if the function returns an error.
type reverter struct {
	undo []func() error
}

func (r *reverter) add(f func() error) { r.undo = append(r.undo, f) }

// fail runs the undo steps when *err is set and joins their errors into it.
func (r *reverter) fail(err *error) {
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
