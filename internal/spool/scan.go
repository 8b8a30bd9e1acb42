package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
)

// Entry is a name found in a queue directory: a candidate queue file.
type Entry struct {
	Queue string // queue name, e.g. "deferred"
	ID    string // file name
	Rel   string // path relative to the spool root, e.g. deferred/5/54AB4BA048
}

// List returns the entries of queue in raw directory order, descending
// into hash subdirectories in their own directory order, as Postfix's
// scanners do (showq lists in this order, so mailq output matches
// Postfix's only if we keep it). Names that are not valid queue IDs are
// skipped. A queue directory that does not exist lists as empty; files
// that vanish during the walk are not errors.
func (s *Spool) List(queue string) ([]Entry, error) {
	var out []Entry
	err := s.walk(queue, queue, 0, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// ListEach is List in parts of at most n entries, in the same order: a
// scan of a million files need not hold a million entries (100 MB) at
// once. fn must not keep the slice, which is reused; an error from fn
// stops the walk and is returned.
func (s *Spool) ListEach(queue string, n int, fn func([]Entry) error) error {
	buf := make([]Entry, 0, max(n, 1))
	err := s.walk(queue, queue, 0, func(e Entry) error {
		buf = append(buf, e)
		if len(buf) < cap(buf) {
			return nil
		}
		err := fn(buf)
		clear(buf)
		buf = buf[:0]
		return err
	})
	if err == nil && len(buf) > 0 {
		err = fn(buf)
	}
	return err
}

func (s *Spool) walk(queue, rel string, depth int, emit func(Entry) error) error {
	d, err := os.Open(filepath.Join(s.Root, rel))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || (depth > 0 && errors.Is(err, syscallENOTDIR)) {
			return nil
		}
		return fmt.Errorf("spool: scan %s: %w", rel, err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			p := rel + "/" + n
			if len(n) == 1 && depth < 16 {
				// A hash subdirectory (single character) or a very
				// short file name; Postfix's scanner descends into
				// one-character names.
				fi, err := os.Lstat(filepath.Join(s.Root, p))
				if err == nil && fi.IsDir() {
					if err := s.walk(queue, p, depth+1, emit); err != nil {
						return err
					}
					continue
				}
			}
			if ValidID(n) {
				if err := emit(Entry{Queue: queue, ID: n, Rel: p}); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) || len(names) == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("spool: scan %s: %w", rel, err)
		}
	}
}

// ForEach runs work on every entry with up to workers goroutines (0 means
// one per CPU) and passes the results to emit in entry order, so output
// keeps directory order while reading is parallel. emit runs on the
// calling goroutine. Work that returns ok=false is not emitted. If emit
// returns an error, ForEach stops and returns it.
func ForEach[T any](entries []Entry, workers int, work func(Entry) (T, bool), emit func(Entry, T) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 || len(entries) < 64 {
		for _, e := range entries {
			if v, ok := work(e); ok {
				if err := emit(e, v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	type slot struct {
		v  T
		ok bool
	}
	const batch = 512
	results := make([]slot, batch)
	for start := 0; start < len(entries); start += batch {
		end := min(start+batch, len(entries))
		var wg sync.WaitGroup
		var next atomic.Int64
		next.Store(int64(start))
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(end) {
						return
					}
					v, ok := work(entries[i])
					results[i-int64(start)] = slot{v, ok}
				}
			}()
		}
		wg.Wait()
		for i := start; i < end; i++ {
			r := &results[i-start]
			if r.ok {
				if err := emit(entries[i], r.v); err != nil {
					return err
				}
			}
			*r = slot{}
		}
	}
	return nil
}
