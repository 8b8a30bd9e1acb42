package qshape_test

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"sluice/internal/qshape"
	"sluice/internal/qshape/qshapetest"
)

// TestBuildBulkSpool builds the spool for comparing speed with Postfix's
// qshape; it runs only when QSHAPE_BULK names a directory:
//
//	QSHAPE_BULK=/tmp/bulk QSHAPE_BULK_N=100000 go test -run TestBuildBulkSpool ./internal/qshape/
//	hyperfine 'sluice qshape -c /tmp/bulk/etc deferred' 'qshape -c /tmp/bulk/etc deferred'
func TestBuildBulkSpool(t *testing.T) {
	dir := os.Getenv("QSHAPE_BULK")
	if dir == "" {
		t.Skip("QSHAPE_BULK is not set")
	}
	n, err := strconv.Atoi(os.Getenv("QSHAPE_BULK_N"))
	if err != nil {
		n = 100000
	}
	root, cfg := filepath.Join(dir, "spool"), filepath.Join(dir, "etc")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "main.cf"), []byte("queue_directory = "+root+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := qshapetest.Bulk(root, n, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkRun10k(b *testing.B) {
	root := b.TempDir()
	now := time.Now()
	if err := qshapetest.Bulk(root, 10000, 1, now); err != nil {
		b.Fatal(err)
	}
	for _, senders := range []bool{false, true} {
		name := "recipients"
		if senders {
			name = "senders"
		}
		b.Run(name, func(b *testing.B) {
			opt := qshape.Defaults()
			opt.Senders = senders
			opt.Now = func() time.Time { return now }
			for i := 0; i < b.N; i++ {
				if err := qshape.Run(opt, []string{root + "/deferred"}, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBulk reads the spool TestBuildBulkSpool made, when QSHAPE_BULK
// names it.
func BenchmarkBulk(b *testing.B) {
	dir := os.Getenv("QSHAPE_BULK")
	if dir == "" {
		b.Skip("QSHAPE_BULK is not set")
	}
	opt := qshape.Defaults()
	for i := 0; i < b.N; i++ {
		if err := qshape.Run(opt, []string{dir + "/spool/deferred"}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
