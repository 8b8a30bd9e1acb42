package qshape

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"

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
//
// The directories stay open (up to maxDirFDs of them) so that files are
// opened relative to them, which saves the kernel a path walk per file.
func candidates(queues []string, warnf func(string, ...any)) *listing {
	l := &listing{dirFDs: map[string]int{}}
	for _, q := range queues {
		fi, err := os.Lstat(q)
		if err != nil {
			warnf("can't stat %s: %v", q, unwrapPath(err))
			continue
		}
		if !fi.IsDir() {
			if nameOK(filepath.Base(q)) {
				l.entries = append(l.entries, spool.Entry{Queue: filepath.Dir(q), ID: filepath.Base(q)})
			}
			continue
		}
		l.walkDir(q, warnf)
	}
	return l
}

// maxDirFDs bounds the directories kept open during a scan.
const maxDirFDs = 512

// listing is the files to read, and the open directories they are in.
// An entry's Queue is the directory the file is in, its ID the file's
// name; Rel is not used.
type listing struct {
	entries []spool.Entry
	dirFDs  map[string]int // directory path → open descriptor
	dirs    []*os.File
}

// open returns how to open e: an open descriptor of its directory and its
// name there, or -1 and its path.
func (l *listing) open(e spool.Entry) (int, string) {
	if fd, ok := l.dirFDs[e.Queue]; ok {
		return fd, e.ID
	}
	return -1, e.Queue + "/" + e.ID
}

func (l *listing) close() {
	for _, d := range l.dirs {
		d.Close()
	}
}

func (l *listing) walkDir(dir string, warnf func(string, ...any)) {
	f, err := os.Open(dir)
	if err != nil {
		warnf("can't opendir(%s): %v", dir, unwrapPath(err))
		return
	}
	var subdirs []string
	err = readDirents(f, func(name string, typ byte) {
		switch typ {
		case syscall.DT_UNKNOWN:
			fi, err := os.Lstat(dir + "/" + name)
			if err != nil {
				return
			}
			if fi.IsDir() {
				typ = syscall.DT_DIR
			} else if fi.Mode().IsRegular() {
				typ = syscall.DT_REG
			}
		}
		switch typ {
		case syscall.DT_DIR:
			subdirs = append(subdirs, name)
		case syscall.DT_REG:
			if nameOK(name) {
				l.entries = append(l.entries, spool.Entry{Queue: dir, ID: name})
			}
		}
	})
	if err != nil {
		warnf("can't read directory %s: %v", dir, err)
	}
	if len(l.dirs) < maxDirFDs {
		l.dirs = append(l.dirs, f)
		l.dirFDs[dir] = int(f.Fd())
	} else {
		f.Close()
	}
	for _, s := range subdirs {
		l.walkDir(dir+"/"+s, warnf)
	}
}

// readDirents calls fn with the name and type (DT_*) of each entry of the
// directory, in the order the kernel gives them, without "." and "..".
// It decodes getdents64 records itself: os.File.ReadDir allocates an
// object per entry, which shows at a hundred thousand files.
func readDirents(f *os.File, fn func(name string, typ byte)) error {
	buf := make([]byte, 64<<10)
	fd := int(f.Fd())
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		// One string per buffer; the names are parts of it.
		chunk := string(buf[:n])
		for off := 0; off+19 <= n; {
			ino := binary.NativeEndian.Uint64(buf[off:])
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			typ := buf[off+18]
			if reclen <= 19 || off+reclen > n {
				return syscall.EIO
			}
			name := chunk[off+19 : off+reclen]
			if i := strings.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			if ino == 0 || name == "." || name == ".." {
				continue
			}
			fn(name, typ)
		}
	}
}

// unwrapPath drops the operation and path from an *fs.PathError, which
// the warning already names.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
