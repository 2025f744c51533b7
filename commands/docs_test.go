package commands

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// complete runs the bash completion script of prog for the words typed so far (the last one
// being completed) and returns the candidates.
func complete(t *testing.T, prog string, words ...string) []string {
	t.Helper()
	code, script, errs := run(t, t.TempDir(), "completion", "bash", "--prog", prog)
	if code != 0 {
		t.Fatalf("completion bash --prog %s: %d %s", prog, code, errs)
	}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	sh := script + "\nvectl() { :; }\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)-1) + "\n_" + prog + "_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "--norc", "-c", sh).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestCompletion(t *testing.T) {
	for _, c := range []struct {
		prog  string
		words []string
		want  string
	}{
		{"vectl", []string{"vectl", "cr"}, "create"},
		{"vectl", []string{"vectl", "--root", "/x", "st"}, "start"},
		{"vectl", []string{"vectl", "set", "101", "--ra"}, "--ram"},
		{"vectl", []string{"vectl", "template", "imp"}, "import"},
		{"vzctl", []string{"vzctl", "--quiet", "ex"}, "exec"},
		{"vzctl", []string{"vzctl", "set", "101", "--kmem"}, "--kmemsize"},
		{"vzctl", []string{"vzctl", "start", "101", "--"}, "--wait"},
		{"vzlist", []string{"vzlist", "-o", "kmemsize."}, "kmemsize.l"},
		{"vzlist", []string{"vzlist", "--no-"}, "--no-header"},
	} {
		got := complete(t, c.prog, c.words...)
		found := false
		for _, g := range got {
			found = found || g == c.want
		}
		if !found {
			t.Errorf("%s %q: %q lacks %q", c.prog, c.words, got, c.want)
		}
	}
	if got := complete(t, "vzctl", "vzctl", "start", "101", "--f"); len(got) != 1 || got[0] != "--force" {
		t.Errorf("vzctl start offers %q for --f (not stop's --fast)", got)
	}
	for _, shell := range []string{"zsh", "fish"} {
		for _, prog := range []string{"vectl", "vzctl", "vzlist"} {
			if code, out, errs := run(t, t.TempDir(), "completion", shell, "--prog", prog); code != 0 || !strings.Contains(out, prog) {
				t.Errorf("completion %s --prog %s: %d %s", shell, prog, code, errs)
			}
		}
	}
	if code, _, _ := run(t, t.TempDir(), "completion", "tcsh"); code != 20 {
		t.Errorf("completion tcsh: exit %d, want 20", code)
	}
}

func TestManPages(t *testing.T) {
	code, out, _ := run(t, t.TempDir(), "man", "vectl")
	if code != 0 || !strings.HasPrefix(out, ".TH VECTL 8") {
		t.Fatalf("man vectl: %d\n%s", code, out)
	}
	for _, c := range NewApp(Streams{}).Commands {
		if !c.Hidden && !strings.Contains(out, "\n.SS "+c.Name) {
			t.Errorf("vectl(8) lacks the command %s", c.Name)
		}
	}
	for _, prog := range []string{"vzctl", "vzlist"} {
		code, out, _ := run(t, t.TempDir(), "man", prog)
		if code != 0 || !strings.Contains(out, "compatibility table") || !strings.Contains(out, `\fBvectl\fR(8)`) {
			t.Errorf("man %s: %d\n%s", prog, code, out)
		}
	}
}
