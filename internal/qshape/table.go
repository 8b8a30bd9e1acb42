package qshape

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// total is the key of the TOTAL row. It is an ordinary row, sorted with
// the others; domains are lower-cased, so no domain can be called TOTAL.
const total = "TOTAL"

// minDomainWidth is the narrowest the domain column gets.
const minDomainWidth = 18

// table holds the counts: for every row, column 0 is the row's total and
// column b (1 ≤ b ≤ the bucket count) the messages of age bucket b.
type table struct {
	opt   *Options
	rows  map[string]*row
	total *row
}

type row struct{ c []int64 }

func newTable(opt *Options) *table {
	t := &table{opt: opt, rows: map[string]*row{}, total: &row{}}
	t.rows[total] = t.total
	return t
}

// add adds one to column 0 and column b. With fewer than one bucket, b
// can be 0 (the total column counted twice) or lie past the printed
// columns, as in the script.
func (r *row) add(b int, n int64) {
	if len(r.c) <= b {
		r.c = append(r.c, make([]int64, b+1-len(r.c))...)
	}
	r.c[0] += n
	r.c[b] += n
}

// bump counts one address in the row named key.
func (t *table) bump(key []byte, b int) {
	r := t.rows[string(key)] // no allocation for the lookup
	if r == nil {
		r = &row{}
		t.rows[string(key)] = r
	}
	r.add(b, 1)
}

// merge adds the counts of o.
func (t *table) merge(o *table) {
	for k, r := range o.rows {
		d := t.rows[k]
		if d == nil {
			d = &row{}
			t.rows[k] = d
		}
		if len(d.c) < len(r.c) {
			d.c = append(d.c, make([]int64, len(r.c)-len(d.c))...)
		}
		for i, n := range r.c {
			d.c[i] += n
		}
	}
}

// bucket returns the age column of a message that arrived at arrival
// (seconds), seen at now.
func (o *Options) bucket(arrival float64, now int64) int {
	m := (float64(now) - arrival) / (60 * o.Tick.F)
	if m < 1 {
		return 1
	}
	var b float64
	if o.Linear {
		b = math.Trunc(m + 1)
	} else {
		b = 2 + math.Trunc(math.Log(m)/math.Log(2))
	}
	if !(b < o.Buckets.F) {
		b = o.Buckets.F
	}
	return int(b)
}

// columns returns the column headings and widths: each column is as wide
// as the longer of its heading and its TOTAL count, plus one, at least 3.
func (t *table) columns() (heads []string, widths []int) {
	tot := t.total.c
	o := t.opt
	tick := heading{f: o.Tick.F}
	if o.Tick.Int {
		tick = heading{isInt: true, u: o.Tick.u}
	}
	var bound heading // 0, an integer
	bound.isInt = true
	plus := ""
	for i := 0; float64(i) <= o.Buckets.F; {
		var n int64
		if i < len(tot) {
			n = tot[i]
		}
		h := "T"
		if i > 0 {
			h = bound.String() + plus
		}
		l := len(strconv.FormatInt(n, 10))
		if len(h) >= l {
			l = len(h)
		}
		if l > 2 {
			l++
		} else {
			l = 3
		}
		heads = append(heads, h)
		widths = append(widths, l)
		i++
		if float64(i) < o.Buckets.F {
			if bound.value() != 0 && !o.Linear {
				bound = add(bound, bound, bound.intable())
			} else {
				bound = add(bound, tick, o.Tick.Int)
			}
		} else {
			plus += "+"
		}
	}
	return heads, widths
}

// sortedKeys orders the rows by total, largest first, then by the length
// of the name, shortest first. Postfix leaves rows equal in both in Perl's
// hash order, which changes from run to run; we order them by the bytes
// of the name.
func (t *table) sortedKeys() []string {
	type kt struct {
		k string
		n int64
	}
	keys := make([]kt, 0, len(t.rows))
	for k, r := range t.rows {
		var n int64
		if len(r.c) > 0 {
			n = r.c[0]
		}
		keys = append(keys, kt{k, n})
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := &keys[i], &keys[j]
		if a.n != b.n {
			return a.n > b.n
		}
		if len(a.k) != len(b.k) {
			return len(a.k) < len(b.k)
		}
		return a.k < b.k
	})
	out := make([]string, len(keys))
	for i := range keys {
		out[i] = keys[i].k
	}
	return out
}

// subdomains counts, for each parent row, the distinct rows that reduce
// to it in one step. The script counts a child when it first appears;
// every row reduces when -p is given, so the count is the same.
func (t *table) subdomains() map[string]int {
	sub := map[string]int{}
	if !t.opt.Parents {
		return sub
	}
	for k := range t.rows {
		if k == total {
			continue
		}
		if p, ok := parent(k); ok {
			sub[p]++
		}
	}
	return sub
}

// write prints the table: the heading row, then the rows in order,
// leaving out parent rows (names with a leading dot) that have fewer than
// MinSub subdomains, and stopping after BatchTop rows when that is set.
func (t *table) write(w io.Writer) error {
	o := t.opt
	bw := bufio.NewWriterSize(w, 64<<10)
	heads, widths := t.columns()
	dw := o.Width.F
	for _, l := range widths {
		dw -= float64(l)
	}
	if dw < minDomainWidth {
		dw = minDomainWidth
	}
	if o.BatchMsgs.F > 0 {
		bw.WriteString(o.Clear)
	}
	writeDomain(bw, "", dw)
	for i, h := range heads {
		pad(bw, widths[i]-len(h))
		bw.WriteString(h)
	}
	bw.WriteByte('\n')

	sub := t.subdomains()
	var num [20]byte
	n := 0
	for _, d := range t.sortedKeys() {
		if strings.HasPrefix(d, ".") && float64(sub[d]) < o.MinSub.F {
			continue
		}
		n++
		if o.BatchTop.F > 0 && float64(n) > o.BatchTop.F {
			break
		}
		writeDomain(bw, d, dw)
		r := t.rows[d].c
		for i, l := range widths {
			var c int64
			if i < len(r) {
				c = r[i]
			}
			s := strconv.AppendInt(num[:0], c, 10)
			pad(bw, l-len(s))
			bw.Write(s)
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// writeDomain prints d right-aligned in a column dw wide; a longer name
// keeps its tail behind "+" (or ".+" for a parent domain). dw can have a
// fraction (from -w); offsets and counts are truncated as Perl does.
func writeDomain(w *bufio.Writer, d string, dw float64) {
	l := float64(len(d))
	if l <= dw {
		pad(w, int(dw-l))
		w.WriteString(d)
		return
	}
	if d[0] == '.' {
		w.WriteString(".+")
		w.WriteString(substr(d, int(l-dw+2), int(dw-2)))
	} else {
		w.WriteString("+")
		w.WriteString(substr(d, int(l-dw+1), int(dw-1)))
	}
}

func substr(s string, off, n int) string {
	if off > len(s) {
		return ""
	}
	s = s[off:]
	if n < len(s) {
		s = s[:n]
	}
	return s
}

const spaces = "                                                                "

func pad(w *bufio.Writer, n int) {
	for n > len(spaces) {
		w.WriteString(spaces)
		n -= len(spaces)
	}
	if n > 0 {
		w.WriteString(spaces[:n])
	}
}
