package postcat

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzPrint feeds arbitrary bytes to every mode of the reader, seekable
// and not: it must end, with output or a fatal error, and never panic.
// The seed corpus is the golden tests' queue files.
func FuzzPrint(f *testing.F) {
	paths, _ := filepath.Glob("testdata/queue/*")
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data, uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		opts := Options{
			Envelope: mode&1 != 0, Header: mode&2 != 0, Body: mode&4 != 0,
			Offsets: mode&8 != 0, Verbose: mode&16 != 0, Raw: mode&32 != 0,
			Decimal: mode&64 != 0,
		}
		if mode&128 != 0 {
			opts.Start = int64(len(data) / 3)
		}
		var in io.Reader = bytes.NewReader(data)
		if mode&128 != 0 && mode&32 != 0 {
			in = io.MultiReader(in) // a pipe: no seeking
		}
		c := New(opts, io.Discard, func(string) {})
		c.Print(Input{Name: "fuzz", R: in, Stdin: mode&128 != 0})
	})
}
