// Package config reads main.cf-style configuration: Postfix's parameter
// names, syntax and defaults, with sluice's own defaults where sluice
// differs (its spool and listen address). See params.go for every
// parameter with its default and meaning.
//
// Syntax (as Postfix's main.cf): "name = value" lines; a line that starts
// with white space continues the previous one; lines whose first
// non-blank character is '#' are comments; $name and ${name} in a value
// expand to another parameter's value when it is looked up.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultDir is sluice's configuration directory when neither -c nor
// MAIL_CONFIG names one. When DefaultDir/main.cf does not exist, sluice
// runs on its embedded defaults.
const DefaultDir = "/etc/sluice"

// Config is one configuration directory's parameters.
type Config struct {
	Dir      string
	Explicit map[string]string // set in main.cf
	order    []string          // names in main.cf order
	lines    map[string]int    // line number of each name, for errors
	postfix  bool              // Dir is a Postfix configuration (has master.cf)
	override map[string]string
}

// Dir picks the configuration directory: the -c flag, then MAIL_CONFIG,
// then DefaultDir.
func Dir(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("MAIL_CONFIG"); env != "" {
		return env
	}
	return DefaultDir
}

// Load reads dir/main.cf. A missing main.cf is an error unless dir is
// DefaultDir, where it means "use the embedded defaults".
func Load(dir string) (*Config, error) {
	c := &Config{Dir: dir, Explicit: map[string]string{}, lines: map[string]int{}}
	if _, err := os.Stat(filepath.Join(dir, "master.cf")); err == nil {
		c.postfix = true
	}
	f, err := os.Open(filepath.Join(dir, "main.cf"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && dir == DefaultDir {
			return c, nil
		}
		return nil, fmt.Errorf("open %s: %w", filepath.Join(dir, "main.cf"), err)
	}
	defer f.Close()
	if err := c.parse(f, filepath.Join(dir, "main.cf")); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse reads main.cf text from r; name is used in errors.
func Parse(r io.Reader, name string) (*Config, error) {
	c := &Config{Explicit: map[string]string{}, lines: map[string]int{}}
	return c, c.parse(r, name)
}

func (c *Config) parse(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var key string
	var val strings.Builder
	keyLine, lineNo := 0, 0
	flush := func() {
		if key != "" {
			if _, dup := c.Explicit[key]; !dup {
				c.order = append(c.order, key)
			}
			c.Explicit[key] = strings.TrimSpace(val.String())
			c.lines[key] = keyLine
		}
		key = ""
		val.Reset()
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if key == "" {
				return fmt.Errorf("%s, line %d: continuation line without a parameter: %q", name, lineNo, trimmed)
			}
			val.WriteByte(' ')
			val.WriteString(trimmed)
			continue
		}
		flush()
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("%s, line %d: missing '=' after attribute name: %q", name, lineNo, trimmed)
		}
		key, keyLine = k, lineNo
		val.WriteString(strings.TrimSpace(v))
	}
	flush()
	return sc.Err()
}

// Set overrides a parameter (postconf -o style, and tests).
func (c *Config) Set(name, value string) {
	if c.override == nil {
		c.override = map[string]string{}
	}
	c.override[name] = value
}

// With returns a copy of c with more overrides (a master.cf service's
// -o name=value options); c is unchanged.
func (c *Config) With(overrides map[string]string) *Config {
	n := *c
	n.override = map[string]string{}
	for k, v := range c.override {
		n.override[k] = v
	}
	for k, v := range overrides {
		n.override[k] = v
	}
	return &n
}

// IsPostfix reports whether the directory is a Postfix configuration.
func (c *Config) IsPostfix() bool { return c.postfix }

// Raw returns a parameter's unexpanded value and whether it is known or set.
func (c *Config) Raw(name string) (string, bool) {
	if v, ok := c.override[name]; ok {
		return v, true
	}
	if v, ok := c.Explicit[name]; ok {
		return v, true
	}
	return c.Default(name)
}

// Default returns a parameter's default value for this configuration.
func (c *Config) Default(name string) (string, bool) {
	if c.postfix {
		if v, ok := postfixOverrides[name]; ok {
			return v, true
		}
	}
	p, ok := paramIndex[name]
	if !ok {
		return "", false
	}
	return p.Default, true
}

// Get returns a parameter's value with $name expansions done.
func (c *Config) Get(name string) string {
	v, _ := c.Raw(name)
	return c.expand(v, 0)
}

func (c *Config) expand(v string, depth int) string {
	if depth > 20 || !strings.Contains(v, "$") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '$' || i+1 >= len(v) {
			b.WriteByte(v[i])
			continue
		}
		var ref string
		if v[i+1] == '{' || v[i+1] == '(' {
			closer := byte('}')
			if v[i+1] == '(' {
				closer = ')'
			}
			end := strings.IndexByte(v[i+2:], closer)
			if end < 0 {
				b.WriteByte(v[i])
				continue
			}
			ref = v[i+2 : i+2+end]
			i += 2 + end
		} else {
			j := i + 1
			for j < len(v) && (v[j] == '_' || v[j] >= 'a' && v[j] <= 'z' || v[j] >= 'A' && v[j] <= 'Z' || v[j] >= '0' && v[j] <= '9') {
				j++
			}
			if j == i+1 {
				b.WriteByte(v[i])
				continue
			}
			ref = v[i+1 : j]
			i = j - 1
		}
		// ${name?text} and ${name:text}: conditional forms.
		if k, text, ok := strings.Cut(ref, "?"); ok {
			if rv, _ := c.Raw(k); rv != "" {
				b.WriteString(c.expand(text, depth+1))
			}
			continue
		}
		if k, text, ok := strings.Cut(ref, ":"); ok {
			if rv, _ := c.Raw(k); rv == "" {
				b.WriteString(c.expand(text, depth+1))
			}
			continue
		}
		rv, _ := c.Raw(ref)
		b.WriteString(c.expand(rv, depth+1))
	}
	return b.String()
}

// Bool returns a yes/no parameter.
func (c *Config) Bool(name string) bool {
	switch strings.ToLower(c.Get(name)) {
	case "yes", "true", "on", "1":
		return true
	}
	return false
}

// Int returns an integer parameter.
func (c *Config) Int(name string) (int64, error) {
	v := c.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad numerical parameter value: %s = %s", name, v)
	}
	return n, nil
}

// Duration returns a time parameter, "300s", "5d", "1h", "30m", "2w" or a
// bare number in the parameter's default unit (seconds unless the
// parameter says otherwise).
func (c *Config) Duration(name string) (time.Duration, error) {
	v := c.Get(name)
	unit := byte('s')
	if p, ok := paramIndex[name]; ok && p.Unit != 0 {
		unit = p.Unit
	}
	d, err := ParseDuration(v, unit)
	if err != nil {
		return 0, fmt.Errorf("bad time parameter value: %s = %s", name, v)
	}
	return d, nil
}

// ParseDuration parses a Postfix time value; def is the unit of a bare
// number.
func ParseDuration(v string, def byte) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, errors.New("empty time value")
	}
	unit := def
	num := v
	if last := v[len(v)-1]; last < '0' || last > '9' {
		unit, num = last, v[:len(v)-1]
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad time value %q", v)
	}
	var mult time.Duration
	switch unit {
	case 's':
		mult = time.Second
	case 'm':
		mult = time.Minute
	case 'h':
		mult = time.Hour
	case 'd':
		mult = 24 * time.Hour
	case 'w':
		mult = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("bad time unit in %q", v)
	}
	return time.Duration(f * float64(mult)), nil
}

// List splits a list parameter on commas and white space.
func (c *Config) List(name string) []string {
	return strings.FieldsFunc(c.Get(name), func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n'
	})
}

// Names returns the parameters set in main.cf, in file order.
func (c *Config) Names() []string { return append([]string(nil), c.order...) }

// Unknown returns the parameters set in main.cf that sluice does not know,
// sorted, with their line numbers, for the daemon's start-up check.
func (c *Config) Unknown() []string {
	var out []string
	for _, n := range c.order {
		if _, ok := paramIndex[n]; !ok {
			out = append(out, fmt.Sprintf("%s (line %d)", n, c.lines[n]))
		}
	}
	sort.Strings(out)
	return out
}
