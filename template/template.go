// Package template is vectl's OS template cache, in the style of OpenVZ's precreated caches.
//
// A template is a root filesystem archive imported once into Store.Dir:
//
//	<Dir>/<name>.tar.<ext>   the archive exactly as imported (built templates are .tar.zst)
//	<Dir>/<name>.json        its metadata (Info)
//	<Dir>/<name>/            the archive unpacked once: the read-only lower layer of overlay
//	                         VEs and the source of copied ones
//
// Templates come from outside and are treated as hostile: Extract refuses entries that would
// write outside the target, through a symlink, or create device nodes. Every operation is
// crash-safe: work happens under names starting with ".tmp-", which List ignores and the next
// Import or Build of the same name removes, and the .json is written last, so a template
// whose .json exists is complete. The package does no locking of its own; the caller
// serialises operations on one name.
package template

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

var (
	// ErrNotFound means no complete template of that name is in the cache.
	ErrNotFound = errors.New("template not found")
	// ErrExist means a template of that name is already in the cache.
	ErrExist = errors.New("template already exists")
	// ErrInvalidName means a template name does not have the accepted form.
	ErrInvalidName = errors.New("invalid template name")
	// ErrUnsafeEntry means an archive holds hostile content: a path leaving the target, a
	// write through a symlink, a device node or an entry type vectl does not know.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
)

// EntryError reports the archive entry that extraction refused or could not create.
type EntryError struct {
	// Entry is the entry's name exactly as it appears in the archive.
	Entry string
	// Err says why; it wraps ErrUnsafeEntry when the entry is hostile.
	Err error
}

// Error names the entry and the reason, e.g. `entry "../x": path leaves the target: unsafe
// archive entry`.
func (e *EntryError) Error() string { return fmt.Sprintf("entry %q: %v", e.Entry, e.Err) }

// Unwrap returns the reason, so that errors.Is(err, ErrUnsafeEntry) works.
func (e *EntryError) Unwrap() error { return e.Err }

// nameRE is the accepted template name: no "/" ever, so a name is always one directory entry
// of Dir, and no leading "." or "-", so it is neither hidden, a temporary nor an option.
// (A loop, not a regular expression: compiling one with a counted repetition cost every
// create most of a millisecond.)
func validName(name string) bool {
	if len(name) == 0 || len(name) > 128 || !isAlnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '.' && c != '_' && c != '+' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidateName checks a template name. OpenVZ names templates dist-version-arch[-variant]
// (debian-12-x86_64-minimal, busybox-1.35-x86_64); vectl accepts any name of letters,
// digits, ".", "_", "+" and "-" that starts with a letter or digit, up to 128 characters.
func ValidateName(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w %q: expected dist-version-arch[-variant] such as debian-12-x86_64-minimal "+
			"(letters, digits, '.', '_', '+' and '-', starting with a letter or digit, at most 128 characters)",
			ErrInvalidName, name)
	}
	return nil
}

// archiveSuffixes are stripped from a file name to get a template name, longest first so that
// ".tar.gz" wins over ".tar".
var archiveSuffixes = []string{".tar.gz", ".tar.xz", ".tar.zst", ".tgz", ".txz", ".tzst", ".tar"}

// NameFromFile derives a template name from an archive's file name by dropping the directory
// and the .tar, .tar.gz, .tgz, .tar.xz, .txz, .tar.zst or .tzst suffix, and validates it.
func NameFromFile(path string) (string, error) {
	name := filepath.Base(path)
	for _, suf := range archiveSuffixes {
		if n, ok := strings.CutSuffix(name, suf); ok {
			name = n
			break
		}
	}
	if err := ValidateName(name); err != nil {
		return "", fmt.Errorf("template name from file %s: %w", path, err)
	}
	return name, nil
}

// lazyRegexp compiles a regular expression on first use rather than at program start:
// every vectl process (and every VE init and monitor, the same binary) would otherwise
// pay for compiling all of them.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
