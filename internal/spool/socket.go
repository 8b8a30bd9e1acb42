package spool

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// maxSocketPath is the longest path a unix socket may have on Linux (the
// size of sockaddr_un's sun_path).
const maxSocketPath = 108

// ErrSocketBusy says that a live server already answers on a socket.
var ErrSocketBusy = errors.New("another daemon is listening there")

// ListenSocket listens on the unix socket at path, a public/ entry that
// any local user may connect to: mode 0666, in a 0711 directory, or in
// the 2710 one of a spool a root daemon prepared, which local users reach
// through the setgid helper (as Postfix's public/ sockets). A socket left
// by a daemon that died is replaced; one that a live daemon answers on is
// left alone and ErrSocketBusy returned. A path too long for a unix
// socket gets an error that says so, rather than the kernel's bare
// "invalid argument".
func ListenSocket(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket %s: the path is %d bytes, longer than the %d a unix socket allows; choose a shorter queue_directory", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// A public/ that a root daemon prepared (mode 2710, group
	// setgid_group, see CreateOwned) is reached through the setgid
	// helper and keeps its mode; one made for a daemon of an ordinary
	// user is opened to every local user.
	if fi, err := os.Stat(dir); err == nil && fi.Mode()&os.ModeSetgid == 0 {
		os.Chmod(dir, 0o711)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: %w", path, ErrSocketBusy)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}
