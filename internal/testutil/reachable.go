package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// Reachable opens a test's temporary directory (from t.TempDir, and the
// per-test directory above it, both made 0700) to other users, so that
// sluice serve started as root can run its mail system as mail_owner in
// it, as on a real host. Without it the start fails: mail_owner cannot
// reach the configuration and the spool.
func Reachable(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
