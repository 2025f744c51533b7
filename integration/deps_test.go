package integration

// This file has no build tag: it is a unit test (make test), unprivileged and offline. It
// reads the repository's sources and the Makefile, never runs vectl.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// runners are the functions (by name, whatever their package or receiver) that run or look
// up a host program, with the index of the argument that names it. An argument that is a
// []string literal, or append of one, names the program by its first element.
var runners = map[string]int{
	// os/exec
	"Command": 0, "CommandContext": 1, "LookPath": 0,
	// the integration tests
	"requireTool": 1, "fwRun": 0, "fwMust": 1, "inNS": 1, "mustNS": 2,
	// container (e2fsprogs)
	"runTool": 1,
	// the bench
	"sh": 0, "command": 0, "stdout": 0,
}

// wrappers run the program named after their own options: the program they run is what
// the check must find. The value is how many arguments after the options belong to the
// wrapper itself.
var wrappers = map[string]int{"nsenter": 0, "timeout": 1, "unshare": 0, "env": 0, "chrt": 1, "nice": 0}

// essential are Debian's Essential packages: on every Debian system, never in a list.
var essential = []string{"bash", "bsdutils", "coreutils", "dash", "debianutils", "diffutils", "dpkg",
	"findutils", "grep", "gzip", "hostname", "libc-bin", "login", "ncurses-bin", "perl-base", "sed",
	"sysvinit-utils", "tar", "util-linux"}

// notPrograms are words in command position that are the shell's own (keywords, builtins).
var notPrograms = strings.Fields(`if then else elif fi for in do done while until case esac function
	return exit local export set unset trap cd echo printf read test [ [[ ]] true false shift wait
	eval exec source . : break continue command type declare readonly umask ulimit kill let`)

// makeVars reads the Makefile's variable assignments (NAME := value, with continuations).
func makeVars(t *testing.T, makefile string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	re := regexp.MustCompile(`^([A-Z_]+)\s*[:?]?=\s*(.*)$`)
	lines := strings.Split(strings.ReplaceAll(makefile, "\\\n", " "), "\n")
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

// expand replaces $(NAME) references to other variables.
func expand(vars map[string]string, s string) string {
	re := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	for range 5 {
		s = re.ReplaceAllStringFunc(s, func(m string) string { return vars[m[2:len(m)-1]] })
	}
	return s
}

// provides is the Makefile's PROVIDES table: what each packaged thing is provided by.
type provides struct {
	pkg      map[string]string // "arping" -> "iputils-arping", "py:scapy" -> "python3-scapy", "lib:x" -> ...
	packages map[string]bool   // every package of the DEB_* lists
}

func readProvides(t *testing.T, makefile string) provides {
	t.Helper()
	vars := makeVars(t, makefile)
	p := provides{pkg: map[string]string{}, packages: map[string]bool{}}
	for name, v := range vars {
		if strings.HasPrefix(name, "DEB_") && name != "DEB_ALL" {
			for _, pkg := range strings.Fields(expand(vars, v)) {
				p.packages[pkg] = true
			}
		}
	}
	for _, e := range strings.Fields(vars["PROVIDES"]) {
		thing, pkg, ok := strings.Cut(e, "=")
		if !ok {
			t.Fatalf("Makefile PROVIDES: %q is not THING=PACKAGE", e)
		}
		p.pkg[thing] = pkg
	}
	if len(p.pkg) == 0 || len(p.packages) == 0 {
		t.Fatal("Makefile: no PROVIDES table or no DEB_ lists")
	}
	return p
}

// check returns one message per problem: a used program or module that no list provides,
// a table row nothing uses, a package of the lists nothing in the table needs.
func (p provides) check(used map[string][]string) []string {
	var errs []string
	for _, thing := range slices.Sorted(maps.Keys(used)) {
		pkg, ok := p.pkg[thing]
		switch {
		case !ok:
			errs = append(errs, "program "+thing+" (run by "+strings.Join(used[thing], ", ")+
				") has no row in the Makefile's PROVIDES table: add PROGRAM=PACKAGE and the package to a DEB_ list")
		case pkg == "toolchain" || pkg == "make-criu" || slices.Contains(essential, pkg):
		case !p.packages[pkg]:
			errs = append(errs, "program "+thing+" (run by "+strings.Join(used[thing], ", ")+
				") comes from package "+pkg+", which is in none of the Makefile's DEB_ lists: make deps would not install it")
		}
	}
	needed := map[string]bool{}
	for thing, pkg := range p.pkg {
		if via, ok := strings.CutPrefix(thing, "via:"); ok {
			// A program run by another tool: that tool must still be run.
			tool, _, _ := strings.Cut(via, ":")
			if _, ok := used[tool]; !ok {
				errs = append(errs, "PROVIDES row "+thing+"="+pkg+": nothing in the repository runs "+tool+" any more")
			}
		} else if _, ok := used[thing]; !ok && !strings.HasPrefix(thing, "lib:") && !strings.HasPrefix(thing, "cgo:") {
			errs = append(errs, "PROVIDES row "+thing+"="+pkg+": nothing in the repository runs "+thing+" any more")
		}
		needed[pkg] = true
	}
	for pkg := range p.packages {
		if !needed[pkg] {
			errs = append(errs, "package "+pkg+" is in a DEB_ list but no PROVIDES row says what it is for")
		}
	}
	slices.Sort(errs)
	return errs
}

// usedPrograms collects the host programs (and Python modules, as "py:NAME") that the
// repository's Go code, Makefile recipes and host-side scripts run, each with where.
func usedPrograms(t *testing.T, repo string) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(prog, where string) {
		prog = strings.TrimSpace(prog)
		if strings.HasPrefix(prog, "/") {
			prog = filepath.Base(prog)
		}
		if prog == "" || prog == "vectl" || prog == "exe" /* /proc/self/exe: vectl */ || slices.Contains(notPrograms, prog) ||
			!regexp.MustCompile(`^(py:)?[a-zA-Z][a-zA-Z0-9._+-]*$`).MatchString(prog) {
			return
		}
		if !slices.Contains(used[prog], where) {
			used[prog] = append(used[prog], where)
		}
	}
	goFiles(t, repo, func(path string, f *ast.File, fset *token.FileSet) {
		rel, _ := filepath.Rel(repo, path)
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				idx, ok := runners[calleeName(x.Fun)]
				if !ok || idx >= len(x.Args) {
					return true
				}
				argv := literalArgv(x.Args[idx:])
				for _, p := range unwrap(argv) {
					add(p, rel)
				}
			case *ast.KeyValueExpr:
				// ociRuntime{bin: "runc"} in the bench.
				if k, ok := x.Key.(*ast.Ident); ok && k.Name == "bin" {
					if s, ok := stringLit(x.Value); ok {
						add(s, rel)
					}
				}
			case *ast.BasicLit:
				// Python run by the tests: "from scapy.all import ...".
				if s, ok := stringLit(x); ok {
					for _, m := range regexp.MustCompile(`(?m)^\s*(?:from\s+([a-z_][a-z0-9_]*)[a-z0-9_.]*\s+import\s|import\s+([a-z_][a-z0-9_]*)\s*$)`).FindAllStringSubmatch(s, -1) {
						m[1] += m[2]
						if !slices.Contains([]string{"sys", "os", "time", "socket", "struct"}, m[1]) {
							add("py:"+m[1], rel)
						}
					}
				}
			}
			return true
		})
	})
	// The lxc peer's argv helper takes the tool first: b.lxc.argv("lxc-start", ...).
	goFiles(t, repo, func(path string, f *ast.File, fset *token.FileSet) {
		rel, _ := filepath.Rel(repo, path)
		ast.Inspect(f, func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok && calleeName(c.Fun) == "argv" && len(c.Args) > 0 {
				if s, ok := stringLit(c.Args[0]); ok && strings.HasPrefix(s, "lxc-") {
					add(s, rel)
				}
			}
			return true
		})
	})
	mk, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := makeVars(t, string(mk))
	var recipes []string
	for _, l := range strings.Split(strings.ReplaceAll(string(mk), "\\\n", " "), "\n") {
		if strings.HasPrefix(l, "\t") {
			// make's own references ($(CURDIR), $@, $(addprefix ...)) are words, not
			// commands; $$ is the shell's $.
			l = expand(vars, l)
			l = regexp.MustCompile(`(^|[^$])\$(\([a-z]+ [^)]*\)|\([A-Za-z_]+\)|[@<^])`).ReplaceAllString(l, "${1}X")
			l = strings.ReplaceAll(l, "$$", "$")
			recipes = append(recipes, strings.TrimLeft(l, "\t@-"))
		}
	}
	for _, w := range shellCommands(strings.Join(recipes, "\n")) {
		add(w, "Makefile")
	}
	// Scripts that run on the host. integration/vm/run-in-vm.sh runs inside the test VM,
	// whose packages build-rootfs.sh installs there, and is not a host script.
	for _, s := range []string{".ci/run", ".ci/fuzz", "integration/vm/vm-test.sh", "integration/vm/build-rootfs.sh"} {
		data, err := os.ReadFile(filepath.Join(repo, s))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range shellCommands(string(data)) {
			add(w, s)
		}
	}
	return used
}

func goFiles(t *testing.T, repo string, visit func(string, *ast.File, *token.FileSet)) {
	t.Helper()
	err := filepath.WalkDir(repo, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "results" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "deps_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		// vmtest files run inside the test VM, whose packages build-rootfs.sh installs;
		// "!vmtest" ones run on the host only.
		vmOnly := func(s string) bool { return strings.Contains(s, "vmtest") && !strings.Contains(s, "!vmtest") }
		if len(f.Comments) > 0 && vmOnly(f.Comments[0].Text()) || vmOnly(firstLine(path)) {
			return nil
		}
		visit(path, f, fset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func firstLine(path string) string {
	data, _ := os.ReadFile(path)
	l, _, _ := strings.Cut(string(data), "\n")
	return l
}

func calleeName(fun ast.Expr) string {
	switch f := fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

// literalArgv turns call arguments into an argv as far as they are literals: plain strings,
// a []string{...} literal, or append([]string{...}, ...). It stops at the first argument it
// cannot read.
func literalArgv(args []ast.Expr) []string {
	var out []string
	for _, a := range args {
		if c, ok := a.(*ast.CallExpr); ok && calleeName(c.Fun) == "append" && len(c.Args) > 0 {
			a = c.Args[0]
		}
		if cl, ok := a.(*ast.CompositeLit); ok {
			for _, el := range cl.Elts {
				s, ok := stringLit(el)
				if !ok {
					return out
				}
				out = append(out, s)
			}
			return out
		}
		s, ok := stringLit(a)
		if !ok {
			return out
		}
		out = append(out, s)
	}
	return out
}

// unwrap returns the programs an argv runs: its first word, what a wrapper (nsenter,
// timeout, ip netns exec) runs after it, and the commands of an sh -c script.
func unwrap(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	prog := filepath.Base(argv[0])
	out := []string{prog}
	rest := argv[1:]
	switch {
	case (prog == "sh" || prog == "bash") && len(rest) > 1 && rest[0] == "-c":
		out = append(out, shellCommands(rest[1])...)
	case prog == "ip" && len(rest) > 3 && rest[0] == "netns" && rest[1] == "exec":
		out = append(out, unwrap(rest[3:])...)
	case wrappers[prog] > 0 || slices.Contains([]string{"nsenter", "unshare", "env", "nice"}, prog):
		for len(rest) > 0 && (strings.HasPrefix(rest[0], "-") || strings.Contains(rest[0], "=")) {
			rest = rest[1:]
		}
		if n := wrappers[prog]; len(rest) > n {
			out = append(out, unwrap(rest[n:])...)
		}
	}
	return out
}

// shellCommands returns the words in command position of a shell script: the first word
// of each simple command, after separators, pipes, $( and backquotes, skipping variable
// assignments and redirections, and what wrappers run. Text in single quotes and function
// names the script defines are not commands. It is a reading for this check, not a shell
// parser: scripts here keep to plain forms.
func shellCommands(script string) []string {
	// Here-documents are data, and so are array assignments.
	var kept []string
	var heredoc *regexp.Regexp
	for _, l := range strings.Split(script, "\n") {
		if heredoc != nil {
			if heredoc.MatchString(l) {
				heredoc = nil
			}
			continue
		}
		if m := regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_]+)['"]?`).FindStringSubmatch(l); m != nil {
			heredoc = regexp.MustCompile(`^\s*` + m[1] + `\s*$`)
		}
		kept = append(kept, l)
	}
	script = regexp.MustCompile(`(?s)\b[A-Za-z_][A-Za-z0-9_]*=\([^)]*\)`).ReplaceAllString(strings.Join(kept, "\n"), "X")
	script = shellCode(strings.ReplaceAll(script, "\\\n", " "))
	// Parameter expansions and arithmetic hold no commands here.
	script = regexp.MustCompile(`\$\{[^}]*\}`).ReplaceAllString(script, "X")
	script = regexp.MustCompile(`\$?\(\([^()]*\)\)`).ReplaceAllString(script, "X")
	funcs := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:function\s+)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\(\)`).FindAllStringSubmatch(script, -1) {
		funcs[m[1]] = true
	}
	text := script
	seps := regexp.MustCompile(`\$\(|&&|\|\||[;|&\n(){}` + "`" + `]|\b(?:then|do|else|if|while|until|!)\s`)
	var out []string
	for _, seg := range seps.Split(text, -1) {
		words := strings.Fields(seg)
		for len(words) > 0 && (regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) ||
			regexp.MustCompile(`^[0-9]*[<>]`).MatchString(words[0])) {
			words = words[1:]
		}
		if len(words) == 0 {
			continue
		}
		w := strings.Trim(words[0], `"`)
		if funcs[w] || w == "Q" || w == "X" || strings.HasPrefix(w, "$") || strings.HasSuffix(w, ")") {
			continue
		}
		if w == "chroot" {
			continue // runs inside another root: the test VM's, with its own packages
		}
		if strings.Contains(w, "/") && !strings.HasPrefix(w, "/") {
			continue // the repository's own script (.ci/fuzz): read as a host script of its own
		}
		for i := range words {
			words[i] = strings.Trim(words[i], `"`)
		}
		out = append(out, unwrap(words)...)
	}
	return out
}

// shellCode returns script with what cannot hold a command replaced: comments are dropped,
// quoted text becomes Q, and only command substitutions inside double quotes are kept.
func shellCode(script string) string {
	var b strings.Builder
	for i := 0; i < len(script); i++ {
		switch c := script[i]; {
		case c == '\\':
			i++
			b.WriteString("X")
		case c == '#' && (i == 0 || strings.ContainsRune(" \t\n;", rune(script[i-1]))):
			for i < len(script) && script[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case c == '\'':
			for i++; i < len(script) && script[i] != '\''; i++ {
			}
			b.WriteString("Q")
		case c == '"':
			b.WriteString("Q")
			for i++; i < len(script) && script[i] != '"'; i++ {
				if script[i] == '\\' {
					i++
					continue
				}
				if strings.HasPrefix(script[i:], "$(") {
					depth, j := 0, i+1
					for ; j < len(script); j++ {
						if script[j] == '(' {
							depth++
						} else if script[j] == ')' {
							if depth--; depth == 0 {
								break
							}
						}
					}
					b.WriteString(" $(" + shellCode(script[i+2:min(j, len(script))]) + ") ")
					i = j
				}
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TestDepsProvided (issue 14): every host program that the code, the tests, the bench, the
// Makefile and the host scripts run is provided by a package that make deps installs (or by
// an Essential package, or is the Go toolchain), and the PROVIDES table has no stale row. On a
// machine with dpkg, each program found on PATH must come from the package the table names:
// the arping of Debian's arping package is not iputils' arping that the tests need.
func TestDepsProvided(t *testing.T) {
	repo, mk := repoMakefile(t)
	p := readProvides(t, mk)
	used := usedPrograms(t, repo)
	for _, want := range []string{"arping", "nft", "debootstrap", "qemu-system-x86_64", "runc", "py:scapy", "lxc-start", "iperf3"} {
		if _, ok := used[want]; !ok {
			t.Errorf("the collector does not see %s, which the tests run: it would miss a missing package", want)
		}
	}
	for _, e := range p.check(used) {
		t.Error(e)
	}
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Logf("no dpkg here: package origins of the programs not checked")
		return
	}
	paths := map[string][]string{} // program -> the spellings of its path dpkg may know
	var all []string
	for thing, pkg := range p.pkg {
		if strings.Contains(thing, ":") || pkg == "toolchain" || pkg == "make-criu" {
			continue
		}
		path, err := exec.LookPath(thing)
		if err != nil {
			continue // not installed here: make deps installs it; the row's package is checked above
		}
		if l, err := os.Readlink(path); err == nil && strings.HasPrefix(l, "/etc/alternatives") {
			continue // chosen by update-alternatives: any provider will do
		}
		paths[thing] = pathSpellings(path)
		all = append(all, paths[thing]...)
	}
	owners := dpkgOwners(all)
	for thing, ps := range paths {
		for _, sp := range ps {
			if owner, ok := owners[sp]; ok {
				if owner != p.pkg[thing] {
					t.Errorf("program %s (%s) comes from package %s here, but the Makefile's PROVIDES says %s",
						thing, sp, owner, p.pkg[thing])
				}
				break
			}
		}
	}
}

// pathSpellings returns path, its target, and their usr-merged twins (/bin/x, /usr/bin/x).
func pathSpellings(path string) []string {
	cands := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		cands = append(cands, real)
	}
	for _, c := range slices.Clone(cands) {
		if strings.HasPrefix(c, "/usr/") {
			cands = append(cands, strings.TrimPrefix(c, "/usr"))
		} else {
			cands = append(cands, "/usr"+c)
		}
	}
	return cands
}

// dpkgOwners asks dpkg once which package installed each path; paths no package has are
// left out. (dpkg-query -S reads the whole database per call.)
func dpkgOwners(paths []string) map[string]string {
	out, _ := exec.Command("dpkg-query", append([]string{"-S"}, paths...)...).Output()
	owners := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		pkgs, path, ok := strings.Cut(line, ": ")
		if !ok || strings.Contains(pkgs, "diversion") {
			continue
		}
		pkg, _, _ := strings.Cut(strings.Split(pkgs, ", ")[0], ":")
		owners[path] = pkg
	}
	return owners
}

// repoMakefile returns the repository's directory and its Makefile.
func repoMakefile(t *testing.T) (string, string) {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	return repo, string(mk)
}

// TestDepsCheckFails (issue 14): the check names the program when its package leaves the
// Makefile's lists, and names a package that no row explains.
func TestDepsCheckFails(t *testing.T) {
	repo, mk := repoMakefile(t)
	used := usedPrograms(t, repo)
	removed := regexp.MustCompile(`(DEB_TEST\s*:=.*?)\biputils-arping\b`).ReplaceAllString(strings.ReplaceAll(mk, "\\\n", " "), "$1")
	errs := strings.Join(readProvides(t, removed).check(used), "\n")
	if !strings.Contains(errs, "program arping") || !strings.Contains(errs, "iputils-arping") {
		t.Errorf("with iputils-arping removed from the lists the check says:\n%s", errs)
	}
	extra := regexp.MustCompile(`(DEB_TEST\s*:=)`).ReplaceAllString(mk, "$1 cowsay")
	if errs := strings.Join(readProvides(t, extra).check(used), "\n"); !strings.Contains(errs, "package cowsay") {
		t.Errorf("with an unexplained package in the lists the check says:\n%s", errs)
	}
	noRow := regexp.MustCompile(`\bnft=nftables\b`).ReplaceAllString(mk, "")
	if errs := strings.Join(readProvides(t, noRow).check(used), "\n"); !strings.Contains(errs, "program nft") {
		t.Errorf("with nft's row removed the check says:\n%s", errs)
	}
}
