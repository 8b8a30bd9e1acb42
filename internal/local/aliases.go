package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Alias is one entry of an aliases(5) file.
type Alias struct {
	Name  string // the key, lower-cased
	Value string // the right-hand side, continuation lines joined with a space
	File  string
	Line  int // where the entry begins
}

// AliasError is one problem in an aliases file, with its place.
type AliasError struct {
	File string
	Line int
	Msg  string
}

func (e *AliasError) Error() string { return fmt.Sprintf("%s, line %d: %s", e.File, e.Line, e.Msg) }

// ParseAliases reads text in /etc/aliases format (aliases(5)):
//
//	name: value, value, ...
//
// An entry may go on over lines that begin with white space; blank lines
// and lines whose first non-blank character is '#' are ignored, also in
// the middle of an entry. The name may be in double quotes (to hold
// white space or a ':'); it is looked up case-insensitively, so it is
// lower-cased. Entries are returned in file order; problems (a line
// without "name:", an empty value, a duplicate name, a continuation line
// with no entry before it) come back as *AliasError with the line
// number, and the bad entries are left out. As postalias does, the first
// of duplicate entries wins.
func ParseAliases(r io.Reader, file string) ([]Alias, []error) {
	var out []Alias
	var errs []error
	seen := map[string]int{}
	var cur *Alias
	finish := func() {
		if cur == nil {
			return
		}
		a := *cur
		cur = nil
		a.Value = strings.TrimSpace(a.Value)
		switch {
		case a.Value == "":
			errs = append(errs, &AliasError{a.File, a.Line, fmt.Sprintf("empty right-hand side for %q", a.Name)})
		case seen[a.Name] != 0:
			errs = append(errs, &AliasError{a.File, a.Line, fmt.Sprintf("duplicate entry: %q (first at line %d)", a.Name, seen[a.Name])})
		default:
			if _, err := splitValue(a.Value); err != nil {
				errs = append(errs, &AliasError{a.File, a.Line, fmt.Sprintf("%q: %v", a.Name, err)})
				return
			}
			seen[a.Name] = a.Line
			out = append(out, a)
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil {
				errs = append(errs, &AliasError{file, n, "continuation line without an entry before it"})
				continue
			}
			cur.Value += " " + trimmed
			continue
		}
		finish()
		name, value, err := splitEntry(line)
		if err != nil {
			errs = append(errs, &AliasError{file, n, err.Error()})
			continue
		}
		cur = &Alias{Name: strings.ToLower(name), Value: value, File: file, Line: n}
	}
	finish()
	if err := sc.Err(); err != nil {
		errs = append(errs, &AliasError{file, n + 1, err.Error()})
	}
	return out, errs
}

// splitEntry cuts "name: value" at the first ':' outside quotes.
func splitEntry(line string) (name, value string, err error) {
	if line[0] == '"' {
		end := closingQuote(line, 0)
		if end < 0 {
			return "", "", errors.New("missing closing quote in name")
		}
		name = unquote(line[:end+1])
		rest := strings.TrimLeft(line[end+1:], " \t")
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("need name:value pair")
		}
		return name, rest[1:], nil
	}
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return "", "", errors.New("need name:value pair")
	}
	name = strings.TrimRight(line[:i], " \t")
	if name == "" {
		return "", "", errors.New("need name:value pair")
	}
	if strings.ContainsAny(name, " \t") {
		return "", "", fmt.Errorf("name %q holds white space (quote it)", name)
	}
	return name, line[i+1:], nil
}

// closingQuote returns the index of the '"' that closes the quoted
// string opening at s[open], honouring backslash escapes, or -1.
func closingQuote(s string, open int) int {
	for i := open + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// unquote removes the quotes and backslash escapes of "...".
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Kind is what a right-hand-side item of an alias or .forward is.
type Kind int

// The kinds of destination local(8) knows.
const (
	KindAddress Kind = iota // an address: delivered again (local) or forwarded
	KindFile                // /path: appended in mbox format (or Maildir, ending in /)
	KindCommand             // |command: run with the message on standard input
	KindInclude             // :include:/path: a file of more items
)

func (k Kind) String() string {
	return [...]string{"address", "file", "command", "include"}[k]
}

// Item is one destination in an alias's value or a .forward file.
type Item struct {
	Kind  Kind
	Value string // the address, path or command
}

// splitValue cuts a value at commas outside double quotes, angle
// brackets and parenthesized comments, drops the comments, and
// classifies each item as aliases(5) and local(8) do: "|command",
// "/file", ":include:/file", or an address. An item wholly in double
// quotes is unquoted first, so "|cmd with, comma" is one command. A
// leading backslash on an address ("\user", sendmail's way of saying "no
// more aliasing") is dropped: Postfix needs no such mark, an alias or
// .forward that names its own user delivers to that user's mailbox.
func splitValue(v string) ([]Item, error) {
	var items []Item
	var cur strings.Builder
	depth, angle := 0, 0
	flush := func() error {
		tok := strings.TrimSpace(cur.String())
		cur.Reset()
		if tok == "" {
			return nil
		}
		it, err := classify(tok)
		if err != nil {
			return err
		}
		items = append(items, it)
		return nil
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' && depth == 0:
			end := closingQuote(v, i)
			if end < 0 {
				return nil, errors.New("missing closing quote")
			}
			cur.WriteString(v[i : end+1])
			i = end
		case c == '\\' && depth == 0 && i+1 < len(v):
			cur.WriteByte(c)
			cur.WriteByte(v[i+1])
			i++
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return nil, errors.New("unbalanced ')'")
			}
			depth--
		case depth > 0:
			// inside a comment
		case c == '<':
			angle++
			cur.WriteByte(c)
		case c == '>':
			if angle > 0 {
				angle--
			}
			cur.WriteByte(c)
		case c == ',' && angle == 0:
			if err := flush(); err != nil {
				return nil, err
			}
		default:
			cur.WriteByte(c)
		}
	}
	if depth > 0 {
		return nil, errors.New("unbalanced '('")
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("no destinations")
	}
	return items, nil
}

func classify(tok string) (Item, error) {
	if tok[0] == '"' && closingQuote(tok, 0) == len(tok)-1 {
		tok = unquote(tok)
	}
	switch {
	case tok == "":
		return Item{}, errors.New("empty item")
	case strings.HasPrefix(strings.ToLower(tok), ":include:"):
		p := strings.TrimSpace(tok[len(":include:"):])
		if !strings.HasPrefix(p, "/") {
			return Item{}, fmt.Errorf(":include: needs an absolute path: %q", tok)
		}
		return Item{KindInclude, p}, nil
	case tok[0] == '|':
		cmd := strings.TrimSpace(tok[1:])
		if cmd == "" {
			return Item{}, errors.New("empty command")
		}
		return Item{KindCommand, unquote(cmd)}, nil
	case tok[0] == '/':
		return Item{KindFile, tok}, nil
	}
	addr := tok
	if i := strings.LastIndexByte(addr, '<'); i >= 0 {
		j := strings.IndexByte(addr[i:], '>')
		if j < 0 {
			return Item{}, fmt.Errorf("unbalanced '<' in %q", tok)
		}
		addr = addr[i+1 : i+j]
	}
	addr = strings.TrimPrefix(strings.TrimSpace(addr), `\`)
	if addr == "" {
		return Item{}, fmt.Errorf("empty address in %q", tok)
	}
	// A quoted local part keeps its quotes off: "a b"@x is the address a b@x.
	if addr[0] == '"' {
		if end := closingQuote(addr, 0); end > 0 {
			addr = unquote(addr[:end+1]) + addr[end+1:]
		}
	}
	return Item{KindAddress, addr}, nil
}

// ParseItems parses a .forward or :include: file: items separated by
// commas or newlines; '#' lines are comments.
func ParseItems(r io.Reader, file string) ([]Item, []error) {
	var items []Item
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(strings.TrimRight(sc.Text(), "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		its, err := splitValue(line)
		if err != nil {
			errs = append(errs, &AliasError{file, n, err.Error()})
			continue
		}
		items = append(items, its...)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &AliasError{file, n + 1, err.Error()})
	}
	return items, errs
}

// aliasTable is one alias_maps entry read from its source text, with the
// owner of the file (local(8) runs the table's commands and file
// deliveries as that owner, or as default_privs when it is root).
type aliasTable struct {
	path    string
	entries map[string]Alias
	uid     uint32
	gid     uint32
	stamp   fileStamp
	err     error // a read failure: lookups defer
}

type fileStamp struct {
	ino, size  int64
	mtime, ctm int64
}

// aliasMaps reads the alias tables on demand and again when a file
// changes (one stat per lookup), as Postfix reopens a changed table.
type aliasMaps struct {
	mu     sync.Mutex
	paths  []string
	tables map[string]*aliasTable
	warn   func(format string, args ...any)
}

// ParseMapSpec turns an alias_maps entry ("hash:/etc/aliases",
// "texthash:/etc/aliases", or a bare path) into the source file to read.
// sluice reads aliases(5) text directly, so hash: and texthash: name the
// same file and no .db is needed.
func ParseMapSpec(spec string) (string, error) {
	typ, path, ok := strings.Cut(spec, ":")
	if !ok {
		if strings.HasPrefix(spec, "/") {
			return spec, nil
		}
		return "", fmt.Errorf("alias table %q: need type:name", spec)
	}
	switch typ {
	case "hash", "btree", "texthash", "lmdb", "cdb", "dbm":
		if !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("alias table %q: need an absolute path", spec)
		}
		return path, nil
	}
	return "", fmt.Errorf("alias table %q: unsupported table type %q (sluice reads the source text of hash:, btree:, lmdb:, cdb:, dbm: and texthash: tables)", spec, typ)
}

func newAliasMaps(paths []string, warn func(string, ...any)) *aliasMaps {
	return &aliasMaps{paths: paths, tables: map[string]*aliasTable{}, warn: warn}
}

// lookup finds name in the tables in order. A table that cannot be
// read makes the lookup fail (the delivery defers): an alias file that
// is there but unreadable must not turn into "unknown user".
func (m *aliasMaps) lookup(name string) (Alias, *aliasTable, bool, error) {
	for _, p := range m.paths {
		t, err := m.table(p)
		if err != nil {
			return Alias{}, nil, false, err
		}
		if a, ok := t.entries[name]; ok {
			return a, t, true, nil
		}
	}
	return Alias{}, nil, false, nil
}

func (m *aliasMaps) table(path string) (*aliasTable, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			// Postfix fails on a missing table; a missing
			// /etc/aliases is common on fresh hosts, so it counts as
			// empty, with a warning once per change.
			t := m.tables[path]
			if t == nil || t.stamp != (fileStamp{}) || t.err != nil {
				if m.warn != nil {
					m.warn("alias table %s: %v (no aliases)", path, err)
				}
				t = &aliasTable{path: path, entries: map[string]Alias{}}
				m.tables[path] = t
			}
			return t, nil
		}
		return nil, fmt.Errorf("alias table %s: %w", path, err)
	}
	stamp := fileStamp{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano(), ctm: st.Ctim.Nano()}
	if t := m.tables[path]; t != nil && t.stamp == stamp && t.err == nil {
		return t, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("alias table %s: %w", path, err)
	}
	defer f.Close()
	list, errs := ParseAliases(f, path)
	for _, e := range errs {
		if m.warn != nil {
			m.warn("%v", e)
		}
	}
	t := &aliasTable{path: path, entries: make(map[string]Alias, len(list)), uid: st.Uid, gid: st.Gid, stamp: stamp}
	for _, a := range list {
		t.entries[a.Name] = a
	}
	m.tables[path] = t
	return t, nil
}
