package postcat

import (
	"encoding/binary"
	"os"
	"strings"
	"time"
)

// Zone returns the local time zone that the C library would use given the
// value of TZ, read when the tool runs (time.Local is fixed the first time
// it is used, so a test that sets TZ could not reach it):
//
//   - empty: /etc/localtime, or UTC when it is missing;
//   - ":NAME" or "NAME": the zoneinfo file NAME (absolute, or under the
//     system zoneinfo directory);
//   - otherwise a POSIX TZ string such as "EST5EDT,M3.2.0,M11.1.0";
//   - anything unusable: UTC.
func Zone(tz string) *time.Location {
	if tz == "" {
		if data, err := os.ReadFile("/etc/localtime"); err == nil {
			if loc, err := time.LoadLocationFromTZData("Local", data); err == nil {
				return loc
			}
		}
		return time.UTC
	}
	name := strings.TrimPrefix(tz, ":")
	if strings.HasPrefix(name, "/") {
		if data, err := os.ReadFile(name); err == nil {
			if loc, err := time.LoadLocationFromTZData(name, data); err == nil {
				return loc
			}
		}
		return time.UTC
	}
	// "Local" would give time.Local, fixed at first use; glibc knows no
	// zone by that name either.
	if name != "Local" {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	if loc, err := time.LoadLocationFromTZData(name, posixZoneData(name)); err == nil {
		return loc
	}
	return time.UTC
}

// posixZoneData wraps a POSIX TZ string in a TZif file with no transitions,
// so that Go's zone code, which applies such a string to every time after
// the last transition, interprets it. A string it cannot parse leaves the
// single UTC zone in force, which is also what glibc falls back to.
func posixZoneData(rule string) []byte {
	var b []byte
	block := func() {
		b = append(b, "TZif2"...)
		b = append(b, make([]byte, 15)...)
		// isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
		for _, n := range []uint32{0, 0, 0, 0, 1, 4} {
			b = binary.BigEndian.AppendUint32(b, n)
		}
		b = append(b, 0, 0, 0, 0, 0, 0) // one type: UTC offset 0, not DST, name at 0
		b = append(b, "UTC\x00"...)
	}
	block() // version 1 data
	block() // version 2 data
	return append(append(append(b, '\n'), rule...), '\n')
}
