package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"sluice/internal/config"
)

// postconfHelp is the manual of sluice postconf.
const postconfHelp = `usage: postconf [-dhnx] [-c config_dir] [-o name=value] [name ...]

Print configuration parameters, as Postfix's postconf does: "name = value",
sorted by name, values as written (with $name references) unless -x.

  (none)      every parameter sluice knows, with its current value
  name ...    only these, in the order given
  -n          only the parameters set in main.cf
  -d          default values instead of current ones
  -h          values only, without "name = "
  -x          expand $name references in values
  -o N=V      override a parameter for this run
  -c DIR      configuration directory (also MAIL_CONFIG)

An unknown name gives "postconf: warning: NAME: unknown parameter"; a
parameter in main.cf that sluice does not know gives "postconf: warning:
DIR/main.cf: unused parameter: NAME=VALUE". Both leave the exit status 0.`

func runPostconf(env *Env) int {
	if len(env.Args) == 1 && env.Args[0] == "--help" {
		fmt.Fprintln(env.Stdout, postconfHelp)
		return 0
	}
	opts, names, err := Getopt(env.Args, "c:dhno:x")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return env.Fatalf(1, "usage: %s [-dhnx] [-c config_dir] [-o name=value] [name ...]", env.Name)
	}
	var dir string
	var defaults, valuesOnly, explicitOnly, expand bool
	var overrides []string
	for _, o := range opts {
		switch o.Name {
		case 'c':
			dir = o.Arg
		case 'd':
			defaults = true
		case 'h':
			valuesOnly = true
		case 'n':
			explicitOnly = true
		case 'x':
			expand = true
		case 'o':
			overrides = append(overrides, o.Arg)
		}
	}
	cfg, err := env.LoadConfig(dir)
	if err != nil {
		return env.Fatalf(1, "%s", postfixOpenError(err))
	}
	// config_directory is the directory actually read; like Postfix's
	// postconf, -n counts it as set when -c or MAIL_CONFIG chose it.
	chosenDir := dir != "" || env.Getenv != nil && env.Getenv("MAIL_CONFIG") != ""
	cfg.Set("config_directory", cfg.Dir)
	for _, o := range overrides {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return env.Fatalf(1, "-o option requires parameter=value, not: %s", o)
		}
		cfg.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}

	value := func(name string) (string, bool) {
		if defaults {
			v, ok := cfg.Default(name)
			if ok && expand {
				v = expandDefault(cfg, v)
			}
			return v, ok
		}
		if _, known := cfg.Default(name); !known {
			if _, set := cfg.Explicit[name]; !set {
				return "", false
			}
		}
		if expand {
			return cfg.Get(name), true
		}
		return cfg.Raw(name)
	}
	print := func(name, v string) {
		switch {
		case valuesOnly:
			fmt.Fprintln(env.Stdout, v)
		case v == "":
			fmt.Fprintf(env.Stdout, "%s =\n", name)
		default:
			fmt.Fprintf(env.Stdout, "%s = %s\n", name, v)
		}
	}

	if len(names) > 0 {
		for _, n := range names {
			if _, known := cfg.Default(n); !known {
				env.Warnf("%s: unknown parameter", n)
				continue
			}
			if explicitOnly && !(n == "config_directory" && chosenDir) {
				if _, set := cfg.Explicit[n]; !set {
					continue
				}
			}
			v, _ := value(n)
			print(n, v)
		}
	} else {
		var list []string
		if explicitOnly {
			if _, set := cfg.Explicit["config_directory"]; chosenDir && !set {
				list = append(list, "config_directory")
			}
			for _, n := range cfg.Names() {
				if _, known := cfg.Default(n); known {
					list = append(list, n)
				}
			}
		} else {
			for _, p := range config.Params {
				list = append(list, p.Name)
			}
		}
		sort.Strings(list)
		for _, n := range list {
			v, _ := value(n)
			print(n, v)
		}
	}
	for _, n := range cfg.Names() {
		if _, known := cfg.Default(n); !known {
			env.Warnf("%s: unused parameter: %s=%s", filepath.Join(cfg.Dir, "main.cf"), n, cfg.Explicit[n])
		}
	}
	return 0
}

// expandDefault expands $name references in a default value against
// the other defaults, as postconf -dx does.
func expandDefault(cfg *config.Config, v string) string {
	// Expansion uses the configuration's own lookups; defaults differ
	// from current values only for parameters set in main.cf, so expand
	// against a copy that has none.
	empty, err := config.Parse(strings.NewReader(""), "defaults")
	if err != nil {
		return v
	}
	empty.Set("__postconf_value", v)
	return empty.Get("__postconf_value")
}

// postfixOpenError words a failure to read main.cf as Postfix does:
// "open DIR/main.cf: No such file or directory".
func postfixOpenError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg := pe.Err.Error()
		if msg != "" {
			msg = strings.ToUpper(msg[:1]) + msg[1:]
		}
		return pe.Op + " " + pe.Path + ": " + msg
	}
	return err.Error()
}
