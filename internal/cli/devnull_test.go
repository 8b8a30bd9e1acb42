package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestIsDevNull: serve copies the mail log to its standard error unless
// that is /dev/null.
func TestIsDevNull(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if !isDevNull(null) {
		t.Error("/dev/null not recognised")
	}
	if isDevNull(file) || isDevNull(&bytes.Buffer{}) {
		t.Error("a file or a buffer taken for /dev/null")
	}
}
