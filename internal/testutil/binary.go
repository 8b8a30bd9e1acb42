package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// sluiceBuild is cmd/sluice, built once per test process.
var sluiceBuild struct {
	once sync.Once
	path string
	err  error
}

// SluiceBinary builds cmd/sluice once per test process, into a directory
// every user may enter (a daemon started as root runs as mail_owner),
// and returns its path.
func SluiceBinary(t testing.TB) string {
	t.Helper()
	b := &sluiceBuild
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-test-bin")
		if err != nil {
			b.err = err
			return
		}
		os.Chmod(dir, 0o755)
		b.path = filepath.Join(dir, "sluice")
		if out, err := exec.Command("go", "build", "-o", b.path, "sluice/cmd/sluice").CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// RemoveSluiceBinary removes what SluiceBinary built; a package's
// TestMain calls it after its tests.
func RemoveSluiceBinary() {
	if p := sluiceBuild.path; p != "" {
		os.RemoveAll(filepath.Dir(p))
	}
}
