package showq

import (
	"io"
	"path/filepath"
	"testing"
	"time"

	"sluice/internal/spool"
)

// BenchmarkCachedText lists through the daemon's Cache once every file is
// in it: the path mailq takes when sluice serve answers.
func BenchmarkCachedText(b *testing.B) {
	root := filepath.Join(b.TempDir(), "spool")
	buildDeferredSpool(b, root, 5000)
	sp := spool.New(root)
	opt := DefaultOptions()
	c := &Cache{Settle: time.Nanosecond}
	list := func() {
		w := NewTextWriter(io.Discard, false, time.UTC)
		if err := c.Scan(sp, opt, w.Write); err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
	time.Sleep(10 * time.Millisecond) // let every file settle
	list()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/5000, "ns/message")
	if hits, _ := c.Stats(); hits == 0 {
		b.Fatal("nothing taken from the cache")
	}
}
