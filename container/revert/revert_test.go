package revert

import (
	"errors"
	"slices"
	"testing"
)

func TestFailRunsUndoInReverse(t *testing.T) {
	var order []int
	run := func(fail bool) error {
		var err error
		func() {
			var r Reverter
			defer r.Fail(&err)
			r.Add(func() error { order = append(order, 1); return nil })
			r.Add(func() error { order = append(order, 2); return errors.New("undo 2") })
			r.Add(func() error { order = append(order, 3); return nil })
			if fail {
				err = errors.New("step 4")
			}
		}()
		return err
	}
	if err := run(false); err != nil || len(order) != 0 {
		t.Fatalf("success: err %v, undo ran %v", err, order)
	}
	err := run(true)
	if !slices.Equal(order, []int{3, 2, 1}) {
		t.Fatalf("undo order %v, want [3 2 1]", order)
	}
	if err == nil || err.Error() != "step 4\nundo 2" {
		t.Fatalf("error %q, want the step's error joined with the failed undo's", err)
	}
}
