package cli

import (
	"fmt"
	"strings"
)

// Opt is one parsed option.
type Opt struct {
	Name byte
	Arg  string
}

// Getopt parses args the way glibc's getopt does for Postfix's tools,
// which ask for POSIX mode ("+" in the optstring): clustered flags (-bh),
// arguments attached or separate (-cDIR, -c DIR), options end at the
// first operand (so "postcat FILE -e" names a file "-e") or at "--".
// spec is a getopt optstring ("bc:dehoqrs:v"). Errors read as glibc's
// do: "invalid option -- 'x'" and "option requires an argument -- 'c'".
func Getopt(args []string, spec string) (opts []Opt, operands []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			operands = append(operands, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			operands = append(operands, args[i:]...)
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			k := strings.IndexByte(spec, c)
			if k < 0 || c == ':' {
				return opts, operands, fmt.Errorf("invalid option -- '%c'", c)
			}
			if k+1 < len(spec) && spec[k+1] == ':' {
				if j+1 < len(a) {
					opts = append(opts, Opt{c, a[j+1:]})
				} else if i+1 < len(args) {
					i++
					opts = append(opts, Opt{c, args[i]})
				} else {
					return opts, operands, fmt.Errorf("option requires an argument -- '%c'", c)
				}
				break
			}
			opts = append(opts, Opt{c, ""})
		}
	}
	return opts, operands, nil
}
