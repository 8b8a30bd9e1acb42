package showq

import (
	"io"
	"os"
	"strings"
	"time"
)

// Zone returns the time zone a process with the environment variable TZ
// set to tz shows times in, as C's localtime() and Go's time.Local
// choose it: "" is the system zone (/etc/localtime), ":name" is name, an
// absolute path is a zone file, any other text a zone name; what cannot
// be loaded is UTC. The daemon uses it to show arrival times in the
// zone of the tool that asked.
func Zone(tz string) *time.Location {
	if tz == "" {
		tz = "/etc/localtime"
	}
	tz = strings.TrimPrefix(tz, ":")
	if strings.HasPrefix(tz, "/") {
		if f, err := os.Open(tz); err == nil {
			defer f.Close()
			if data, err := io.ReadAll(f); err == nil {
				if loc, err := time.LoadLocationFromTZData(tz, data); err == nil {
					return loc
				}
			}
		}
		return time.UTC
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		return loc
	}
	return time.UTC
}
