package qshape

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkRunCounts is RunCounts on counts the shape of a million
// deferred messages' model: 300 domains, each with a count for every
// second of three days that has mail.
func BenchmarkRunCounts(b *testing.B) {
	now := time.Unix(1796000000, 0)
	domains := make([]string, 300)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%03d.example.com", i)
	}
	counts := func(add func(string, int64, int64)) {
		for i, d := range domains {
			for s := int64(i); s < 3*86400; s += 80 {
				add(d, now.Unix()-3*86400+s, 2)
			}
		}
	}
	for _, parents := range []bool{false, true} {
		b.Run(fmt.Sprintf("parents=%v", parents), func(b *testing.B) {
			opt := Defaults()
			opt.Now = func() time.Time { return now }
			opt.Parents = parents
			for b.Loop() {
				if err := RunCounts(opt, counts, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAgeBuckets: the buckets found from the steps are those bucket
// computes, for every age of the first days to the second and for ages
// spread over years, under the bucket and tick settings qshape takes.
func TestAgeBuckets(t *testing.T) {
	now := int64(1796000000)
	for _, c := range []struct {
		linear  bool
		tick    float64
		buckets float64
	}{
		{false, 5, 10}, {false, 1, 30}, {false, 60, 8}, {true, 5, 10}, {true, 0.5, 40},
		{false, 0.001, 60}, {false, 7.25, 10.5}, {true, 3, 1},
	} {
		o := Defaults()
		o.Linear = c.linear
		o.Tick.F, o.Buckets.F = c.tick, c.buckets
		a := newAgeBuckets(&o, now)
		check := func(age int64) {
			if got, want := a.bucket(now-age), o.bucket(float64(now-age), now); got != want {
				t.Fatalf("%+v: age %d: bucket %d, want %d", c, age, got, want)
			}
		}
		for age := int64(-100); age < 3*86400; age++ {
			check(age)
		}
		for age := int64(3 * 86400); age < 40*365*86400; age = age*17/16 + 1 {
			check(age)
		}
	}
}
