package commands

import (
	"fmt"
	"strings"
)

// longOpt is one long option of a getopt_long table: its name, whether it takes a value,
// and the key it reports (the letter of its short twin, or a name of its own).
type longOpt struct {
	name   string
	hasArg bool
	key    string
}

// option is one parsed option: its key and its value ("" for a flag).
type option struct {
	key, arg string
	// long is the name the user wrote (--NAME), for messages; "" for a short option.
	long string
}

// getoptLong parses args (without the program name) as glibc's getopt_long does for the
// programs vzctl and vzlist: short options from short ("o:" takes a value, attached or as
// the next word, and flags cluster: -aHo ctid), long options as --name=value or --name
// value, a unique prefix of a long name accepted as the name, "--" ending the options, and
// non-options permuted to the end unless short starts with "+". Errors read as glibc's,
// with prog as their prefix.
func getoptLong(prog string, args []string, short string, longs []longOpt) ([]option, []string, error) {
	permute := true
	if strings.HasPrefix(short, "+") {
		permute, short = false, short[1:]
	}
	var opts []option
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return opts, append(rest, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			lo, err := matchLong(prog, name, longs)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case lo.hasArg && !hasVal:
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("%s: option '--%s' requires an argument", prog, lo.name)
				}
				i++
				val = args[i]
			case !lo.hasArg && hasVal:
				return nil, nil, fmt.Errorf("%s: option '--%s' doesn't allow an argument", prog, lo.name)
			}
			opts = append(opts, option{key: lo.key, arg: val, long: lo.name})
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				k := strings.IndexByte(short, c)
				if k < 0 || c == ':' {
					return nil, nil, fmt.Errorf("%s: invalid option -- '%c'", prog, c)
				}
				if k+1 < len(short) && short[k+1] == ':' {
					val := a[j+1:]
					if val == "" {
						if i+1 >= len(args) {
							return nil, nil, fmt.Errorf("%s: option requires an argument -- '%c'", prog, c)
						}
						i++
						val = args[i]
					}
					opts = append(opts, option{key: string(c), arg: val})
					break
				}
				opts = append(opts, option{key: string(c)})
			}
		default:
			if !permute {
				return opts, append(rest, args[i:]...), nil
			}
			rest = append(rest, a)
		}
	}
	return opts, rest, nil
}

// matchLong finds a long option by its name or by a prefix that only one name has.
func matchLong(prog, name string, longs []longOpt) (longOpt, error) {
	var found []longOpt
	for _, lo := range longs {
		if lo.name == name {
			return lo, nil
		}
		if name != "" && strings.HasPrefix(lo.name, name) {
			found = append(found, lo)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		// glibc accepts an ambiguous prefix when every match is the same option.
		same := true
		for _, lo := range found[1:] {
			same = same && lo.key == found[0].key && lo.hasArg == found[0].hasArg
		}
		if same {
			return found[0], nil
		}
		names := make([]string, len(found))
		for i, lo := range found {
			names[i] = "'--" + lo.name + "'"
		}
		return longOpt{}, fmt.Errorf("%s: option '--%s' is ambiguous; possibilities: %s", prog, name, strings.Join(names, " "))
	}
	return longOpt{}, fmt.Errorf("%s: unrecognized option '--%s'", prog, name)
}
