package smtpd

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// LoginMaps is smtpd_sender_login_maps: tables of "sender owner,owner..."
// lines. As for alias_maps, sluice reads the source text of a hash:,
// btree:, lmdb:, cdb:, dbm: or texthash: table (the file postmap reads),
// so no .db is needed: key, white space, value; '#' comments; a line
// that starts with white space continues the previous one. Keys match
// without regard to case. The tables are read when the configuration is
// (start and reload).
type LoginMaps struct {
	tables []map[string][]string
}

// LoadLoginMaps reads the tables a smtpd_sender_login_maps value names.
func LoadLoginMaps(specs []string) (*LoginMaps, error) {
	lm := &LoginMaps{}
	for _, spec := range specs {
		path := spec
		if typ, p, ok := strings.Cut(spec, ":"); ok {
			switch typ {
			case "hash", "btree", "lmdb", "cdb", "dbm", "texthash":
				path = p
			default:
				return nil, fmt.Errorf("smtpd_sender_login_maps: unsupported table type %q in %q (sluice reads the source text of hash:, btree:, lmdb:, cdb:, dbm: and texthash: tables)", typ, spec)
			}
		}
		t, err := readLoginTable(path)
		if err != nil {
			return nil, fmt.Errorf("smtpd_sender_login_maps: %w", err)
		}
		lm.tables = append(lm.tables, t)
	}
	return lm, nil
}

func readLoginTable(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := map[string][]string{}
	var entries []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(entries) > 0 {
			entries[len(entries)-1] += " " + trimmed
			continue
		}
		entries = append(entries, trimmed)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range entries {
		key, value, _ := strings.Cut(strings.ReplaceAll(e, "\t", " "), " ")
		owners := strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' })
		t[strings.ToLower(key)] = owners
	}
	return t, nil
}

// Lookup returns the owners of key in the first table that has it.
func (lm *LoginMaps) Lookup(key string) ([]string, bool, error) {
	key = strings.ToLower(key)
	for _, t := range lm.tables {
		if v, ok := t[key]; ok {
			return v, true, nil
		}
	}
	return nil, false, nil
}
