package spool

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "public", "s")
	l, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v, %v; want 0666", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("public/ mode %v, %v; want 0711", fi.Mode().Perm(), err)
	}
	// The listener is passed in: l is reassigned below.
	go func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}(l)
	// A live server keeps its socket.
	if _, err := ListenSocket(path); !errors.Is(err, ErrSocketBusy) {
		t.Errorf("second listen: %v, want ErrSocketBusy", err)
	}
	l.Close()
	// A dead one's socket file is replaced.
	os.Remove(path)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	l, err = ListenSocket(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()
	// Too long a path is named as such.
	long := filepath.Join(dir, strings.Repeat("d", 120), "s")
	if _, err := ListenSocket(long); err == nil || !strings.Contains(err.Error(), "shorter queue_directory") {
		t.Errorf("long path: %v", err)
	}
}
