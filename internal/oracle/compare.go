package oracle

import (
	"fmt"
	"sort"
	"strings"
)

// Diff returns "" when got and want are equal, else a line diff of the
// two (want = Postfix, got = sluice) that names the first differing line
// and shows invisible characters.
func Diff(want, got string) string {
	if want == got {
		return ""
	}
	wl := strings.SplitAfter(want, "\n")
	gl := strings.SplitAfter(got, "\n")
	var b strings.Builder
	first := -1
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w == g {
			continue
		}
		if first < 0 {
			first = i
			fmt.Fprintf(&b, "first difference at line %d\n", i+1)
		}
		if i-first >= 20 {
			b.WriteString("...\n")
			break
		}
		if i < len(wl) {
			fmt.Fprintf(&b, "-postfix %4d %q\n", i+1, w)
		}
		if i < len(gl) {
			fmt.Fprintf(&b, "+sluice  %4d %q\n", i+1, g)
		}
	}
	fmt.Fprintf(&b, "(postfix: %d bytes, %d lines; sluice: %d bytes, %d lines)", len(want), strings.Count(want, "\n"), len(got), strings.Count(got, "\n"))
	return b.String()
}

// QshapeCanonical puts qshape output in a canonical order for comparing.
// qshape sorts rows by the T column (descending), then by domain length;
// rows that tie on both come out in Perl's hash order, which is random
// per run. QshapeCanonical sorts the rows inside each such tie group by
// their text and leaves everything else, headings and column widths
// included, exactly as it was.
func QshapeCanonical(out string) string {
	lines := strings.SplitAfter(out, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 2 {
		return out
	}
	type row struct {
		key  string // T value and domain length
		text string
	}
	rows := make([]row, 0, len(lines)-1)
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		key := l
		if len(f) >= 2 {
			key = f[1] + " " + fmt.Sprint(len(f[0]))
		}
		rows = append(rows, row{key, l})
	}
	var b strings.Builder
	b.WriteString(lines[0])
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && rows[j].key == rows[i].key {
			j++
		}
		group := make([]string, 0, j-i)
		for _, r := range rows[i:j] {
			group = append(group, r.text)
		}
		sort.Strings(group)
		for _, g := range group {
			b.WriteString(g)
		}
		i = j
	}
	return b.String()
}
