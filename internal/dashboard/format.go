package dashboard

import (
	"crypto/sha256"
	"encoding/hex"
	"html/template"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// funcs are the templates' helpers. Times are shown in UTC, so a page
// reads the same whatever the daemon's or the browser's time zone.
var funcs = template.FuncMap{
	"age":        age,
	"ts":         ts,
	"bytes":      humanBytes,
	"dur":        shortDuration,
	"join":       strings.Join,
	"selurl":     messagesURL,
	"clip":       clip,
	"clipaddr":   func(s string) string { return clip(s, maxAddrLen) },
	"clipreason": func(s string) string { return clip(s, maxReasonLen) },
	"msgurl": func(id string) string {
		return "/messages/" + id
	},
	"sender": func(s string) string {
		if s == "" {
			return "<>"
		}
		return s
	},
	"headers": func(h []Header) []Header {
		if len(h) > maxHeaders {
			h = h[:maxHeaders]
		}
		out := make([]Header, len(h))
		for i, x := range h {
			if len(x.Value) > maxHeaderLen {
				x.Value = x.Value[:maxHeaderLen] + " …"
			}
			out[i] = x
		}
		return out
	},
	"body": func(s string) string {
		if len(s) > maxBody {
			return s[:maxBody]
		}
		return s
	},
	"bodycut": func(s string, cut bool) bool { return cut || len(s) > maxBody },
}

// age is how long before now t was, "" for the zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return shortDuration(now.Sub(t))
}

// shortDuration is 45s, 12m, 3h05m, 2d4h: two units at most.
func shortDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	s := int64(d / time.Second)
	var out string
	switch {
	case s < 60:
		out = strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		out = strconv.FormatInt(s/60, 10) + "m"
		if r := s % 60; r != 0 && s < 600 {
			out += strconv.FormatInt(r, 10) + "s"
		}
	case s < 86400:
		out = strconv.FormatInt(s/3600, 10) + "h"
		if m := s % 3600 / 60; m != 0 {
			out += pad2(m) + "m"
		}
	default:
		out = strconv.FormatInt(s/86400, 10) + "d"
		if h := s % 86400 / 3600; h != 0 {
			out += strconv.FormatInt(h, 10) + "h"
		}
	}
	if neg {
		return "in " + out
	}
	return out
}

func pad2(n int64) string {
	if n < 10 {
		return "0" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

// ts is a timestamp in UTC, "" for the zero time.
func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// humanBytes is 512 B, 1.5 KB, 12 MB (powers of 1024, as the selector's
// sizes).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	for _, u := range []string{"KB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit || u == "TB" {
			if f < 10 {
				return strconv.FormatFloat(f, 'f', 1, 64) + " " + u
			}
			return strconv.FormatFloat(f, 'f', 0, 64) + " " + u
		}
	}
	return ""
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// clip shortens s to n bytes (at a rune boundary) and marks the cut; the
// message page shows the whole text.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
