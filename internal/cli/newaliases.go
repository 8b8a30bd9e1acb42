package cli

import (
	"fmt"
	"os"

	"sluice/internal/local"
)

// newaliasesHelp is the manual of sluice newaliases.
const newaliasesHelp = `usage: newaliases [-c config_dir]

Check the alias files that alias_database names (Postfix's Debian default:
hash:/etc/aliases). sluice reads aliases(5) text directly, so there is no
database to build: newaliases only reads each file and reports every
problem as "newaliases: warning: FILE, line N: ..." (a line without
"name:", an empty value, a duplicate name, a bad item such as an unclosed
quote or a relative :include:), then "newaliases: FILE: N entries".

Exit status 0 when every file was read without a problem, 1 otherwise.

  -c DIR      configuration directory (also MAIL_CONFIG)`

func runNewaliases(env *Env) int {
	if len(env.Args) == 1 && env.Args[0] == "--help" {
		fmt.Fprintln(env.Stdout, newaliasesHelp)
		return 0
	}
	opts, rest, err := Getopt(env.Args, "c:")
	if err != nil || len(rest) > 0 {
		return env.Fatalf(1, "usage: %s [-c config_dir]", env.Name)
	}
	var dir string
	for _, o := range opts {
		if o.Name == 'c' {
			dir = o.Arg
		}
	}
	cfg, err := env.LoadConfig(dir)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	files, err := local.MapFiles(cfg.List("alias_database"))
	if err != nil {
		return env.Fatalf(1, "alias_database: %v", err)
	}
	status := 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(env.Stderr, "%s: fatal: open %s: %v\n", env.Name, path, err)
			status = 1
			continue
		}
		entries, errs := local.ParseAliases(f, path)
		f.Close()
		for _, e := range errs {
			fmt.Fprintf(env.Stderr, "%s: warning: %v\n", env.Name, e)
			status = 1
		}
		fmt.Fprintf(env.Stdout, "%s: %s: %d entries\n", env.Name, path, len(entries))
	}
	return status
}
