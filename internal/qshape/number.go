package qshape

import (
	"math"
	"strconv"
	"strings"
)

// Number is an option value the way Perl sees a string used as a number.
// qshape compares its option strings numerically ("-w 100.5", "-t 0.1",
// "-b 3.5" all work in Postfix's script), and Perl keeps integers and
// floating-point values apart, which shows in the bucket headings once
// they pass 10^15. Number records both the value and which of the two
// kinds Perl would use for it in an addition.
type Number struct {
	F float64
	// Int is set when Perl would add the value as an integer: a plain
	// decimal integer ("5", " +7"), or an integral value below 2^53
	// written some other way ("1e3", "5abc"), but not a decimal
	// fraction with digits before the point ("5.0").
	Int bool
	u   uint64 // the exact value of a non-negative integer (F may round it)
}

// Num returns the Number for a non-negative integer.
func Num(n uint64) Number { return Number{F: float64(n), Int: true, u: n} }

// perlSpace is Perl's \s for byte strings.
func perlSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// ParseNumber converts s as Perl's numeric conversion does: leading white
// space, an optional sign, digits with an optional fraction and exponent,
// or Inf/Infinity/NaN; whatever follows the longest such prefix is
// ignored, and a string with no number in front is 0.
func ParseNumber(s string) Number {
	i := 0
	for i < len(s) && perlSpace(s[i]) {
		i++
	}
	start := i
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	neg := i > start && s[start] == '-'
	if f, ok := parseInfNaN(s[i:]); ok {
		if neg {
			f = -f
		}
		return Number{F: f}
	}
	intDigits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		intDigits++
	}
	fracDigits, radix, exp := 0, false, false
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
			fracDigits++
		}
		if intDigits > 0 || fracDigits > 0 {
			radix = true
			i = j
		}
	}
	if intDigits == 0 && fracDigits == 0 {
		return Number{F: 0, Int: true}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k > j {
			exp = true
			i = k
		}
	}
	f, _ := strconv.ParseFloat(s[start:i], 64) // out of range gives ±Inf, as in Perl
	rest := i
	for rest < len(s) && perlSpace(s[rest]) {
		rest++
	}
	clean := rest == len(s)
	switch {
	case !radix && !exp && clean:
		// An integer: exact if it fits Perl's UV, else floating point.
		digits := strings.TrimPrefix(s[start:i], "+")
		if u, err := strconv.ParseUint(digits, 10, 64); err == nil {
			return Number{F: f, Int: true, u: u}
		}
		if _, err := strconv.ParseInt(digits, 10, 64); err == nil {
			return Number{F: f, Int: true}
		}
		return Number{F: f}
	case radix && !exp && intDigits > 0 && clean:
		// "5.0": Perl keeps the fraction's floating-point value.
		return Number{F: f}
	default:
		n := Number{F: f, Int: f == math.Trunc(f) && math.Abs(f) < 1<<53}
		if n.Int && f >= 0 {
			n.u = uint64(f)
		}
		return n
	}
}

func parseInfNaN(s string) (float64, bool) {
	l := strings.ToLower(s)
	switch {
	case strings.HasPrefix(l, "inf"):
		return math.Inf(1), true
	case strings.HasPrefix(l, "nan"):
		return math.NaN(), true
	}
	return 0, false
}

// heading is one bucket bound as the script computes it: Perl adds the
// bounds up as integers while both operands allow it and in floating
// point otherwise, and prints integers exactly but floating-point values
// with 15 significant digits.
type heading struct {
	isInt bool
	u     uint64
	f     float64
}

func (h heading) value() float64 {
	if h.isInt {
		return float64(h.u)
	}
	return h.f
}

// intable reports whether Perl would add h as an integer.
func (h heading) intable() bool {
	return h.isInt || (h.f >= 0 && h.f == math.Trunc(h.f) && h.f < 1<<53)
}

func (h heading) asUint() uint64 {
	if h.isInt {
		return h.u
	}
	return uint64(h.f)
}

// add returns a+b with Perl's choice between integer and floating-point
// addition (both operands are never negative here).
func add(a heading, b heading, bInt bool) heading {
	if a.intable() && bInt {
		x, y := a.asUint(), b.asUint()
		if s := x + y; s >= x {
			return heading{isInt: true, u: s}
		}
	}
	return heading{f: a.value() + b.value()}
}

func (h heading) String() string {
	if h.isInt {
		return strconv.FormatUint(h.u, 10)
	}
	return perlFloat(h.f)
}

// perlFloat formats f as Perl stringifies a floating-point value (%.15g).
func perlFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', 15, 64)
}
