package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyFile: a part of a file goes to a file with sendfile(2), and to
// one that refuses it (opened O_APPEND: EINVAL) by a copy, the same bytes
// either way.
func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	text := strings.Repeat("0123456789", 100_000)
	src.WriteString(text)
	for _, flag := range []int{os.O_WRONLY, os.O_WRONLY | os.O_APPEND} {
		path := filepath.Join(dir, "out")
		os.Remove(path)
		out, err := os.OpenFile(path, os.O_CREATE|flag, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := copyFile(out, src, 5, 700_000); err != nil {
			t.Fatalf("flags %#x: %v", flag, err)
		}
		out.Close()
		if got, _ := os.ReadFile(path); string(got) != text[5:700_005] {
			t.Errorf("flags %#x: %d bytes, not the part asked for", flag, len(got))
		}
	}
}
