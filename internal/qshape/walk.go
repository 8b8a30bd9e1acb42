package qshape

import (
	"os"
	"path/filepath"

	"sluice/internal/spool"
)

// candidates lists the files under the given queue directories in the
// order Perl's File::Find visits them, which the script uses: in each
// directory the files in directory order, then each subdirectory in
// directory order, depth first, at any depth and under any name (not
// only hash directories, so "qshape /some/copy" works as in Postfix).
// Symbolic links are not followed. A queue argument that is a file is a
// candidate itself. Names that cannot be queue files are left out here;
// the reader checks type and mode.
//
// spool.List is not used because it descends only into one-character
// hash directories.
func candidates(queues []string, warnf func(string, ...any)) []spool.Entry {
	var out []spool.Entry
	for _, q := range queues {
		fi, err := os.Lstat(q)
		if err != nil {
			warnf("can't stat %s: %v", q, unwrapPath(err))
			continue
		}
		if !fi.IsDir() {
			if nameOK(filepath.Base(q)) {
				out = append(out, spool.Entry{Queue: q, ID: filepath.Base(q), Rel: q})
			}
			continue
		}
		out = walkDir(q, q, out, warnf)
	}
	return out
}

func walkDir(queue, dir string, out []spool.Entry, warnf func(string, ...any)) []spool.Entry {
	f, err := os.Open(dir)
	if err != nil {
		warnf("can't opendir(%s): %v", dir, unwrapPath(err))
		return out
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		warnf("can't read directory %s: %v", dir, unwrapPath(err))
	}
	var subdirs []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			subdirs = append(subdirs, name)
			continue
		}
		if nameOK(name) && e.Type().IsRegular() {
			out = append(out, spool.Entry{Queue: queue, ID: name, Rel: dir + "/" + name})
		}
	}
	for _, s := range subdirs {
		out = walkDir(queue, dir+"/"+s, out, warnf)
	}
	return out
}

// unwrapPath drops the operation and path from an *fs.PathError, which
// the warning already names.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
