package qshape_test

import (
	"io"
	"testing"
	"time"

	"sluice/internal/qshape"
	"sluice/internal/qshape/qshapetest"
)

// BenchmarkCachedRun10k computes the table through the daemon's Cache
// once every file is in it: the path qshape takes when sluice serve
// answers.
func BenchmarkCachedRun10k(b *testing.B) {
	root := b.TempDir()
	now := time.Now()
	if err := qshapetest.Bulk(root, 10000, 1, now); err != nil {
		b.Fatal(err)
	}
	c := &qshape.Cache{Settle: time.Nanosecond}
	opt := qshape.Defaults()
	opt.Now = func() time.Time { return now }
	run := func() {
		if err := c.Run(opt, []string{root + "/deferred"}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // let every file settle
	run()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
	if hits, _ := c.Stats(); hits == 0 {
		b.Fatal("nothing taken from the cache")
	}
}
