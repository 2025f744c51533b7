package idle

import (
	"embed"
	"os/exec"

	"github.com/vectl/vectl/container/helperbin"
)

// helperFS holds the idle loop as a program of its own, vectl-idle (helper/main.c, built by
// make into bin/ with a file of its sha256): a resting monitor executes it instead of
// vectl, so that it maps the pages of a 0.7 MB binary rather than those of the 20 MB one
// (the kernel maps a page-cache folio of up to 2 MiB whole). A plain go build leaves only
// bin/.keep here, and the loop then runs in vectl's own binary, as it always can.
//
//go:embed all:bin
var helperFS embed.FS

const helperName = "vectl-idle"

// HelperPath returns the path of the idle-loop program in dir, extracting it there first
// if it is not there yet (helperbin.Extract). It returns "" and no error when this binary was
// built without the program.
func HelperPath(dir string) (string, error) {
	return helperbin.Extract(helperFS, "bin/"+helperName, dir)
}

// LayOut runs the layout helper of the idle-loop program helper (HelperPath) on files: it
// returns once the helper has detached; the helper lays the files out in the page cache in
// 2 MiB folios in the background (layout.c).
func LayOut(helper string, files []string) error {
	cmd := exec.Command(helper, append([]string{LayoutArg}, files...)...)
	cmd.Args[0] = "vectl-layout"
	return cmd.Run()
}
