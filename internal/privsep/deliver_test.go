package privsep

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play `sluice local-deliver` for
// TestDeliveryChannel: it reports who it runs as and copies its input.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_FAKE_LOCAL_DELIVER") == "1" && len(os.Args) > 1 && os.Args[1] == "local-deliver" {
		fmt.Printf("uid=%d euid=%d gid=%d args=%q\n", os.Getuid(), os.Geteuid(), os.Getgid(), os.Args[2:])
		io.Copy(os.Stdout, os.Stdin)
		if len(os.Args) > 2 && os.Args[2] == "fail" {
			os.Exit(75)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDeliveryChannel: the unprivileged side hands an open message and
// a result pipe to the root side, which runs the helper as the user.
func TestDeliveryChannel(t *testing.T) {
	requireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	mconn, cfile, err := DeliveryPair()
	if err != nil {
		t.Fatal(err)
	}
	srv := &DeliveryServer{Conn: mconn, Exe: "/proc/self/exe", Argv0: "sluice", Env: []string{"SLUICE_FAKE_LOCAL_DELIVER=1"}, Logf: t.Logf}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	cconn, err := DeliveryConn(cfile)
	if err != nil {
		t.Fatal(err)
	}
	cfile.Close()
	c := NewDeliveryClient(cconn)

	deliver := func(usr string, args ...string) (DeliveryResult, string, error) {
		msg, err := os.CreateTemp("", "msg")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(msg.Name())
		defer msg.Close()
		msg.WriteString("Subject: for " + usr + "\n\nbody\n")
		msg.Seek(0, 0)
		os.Chmod(msg.Name(), 0o600) // the helper reads the fd, not the path
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Deliver(context.Background(), usr, args, 30*time.Second, msg, w)
		w.Close()
		out, _ := io.ReadAll(r)
		r.Close()
		return res, string(out), err
	}
	res, out, err := deliver("nobody", "-r", "nobody@example.com")
	want := fmt.Sprintf("uid=%s euid=%s gid=%s args=[\"-r\" \"nobody@example.com\"]\nSubject: for nobody\n\nbody\n", nobody.Uid, nobody.Uid, nobody.Gid)
	if err != nil || res.Status != 0 || out != want {
		t.Errorf("as nobody: %+v %v\n%q\nwant\n%q", res, err, out, want)
	}
	if res, _, err := deliver("nobody", "fail"); err != nil || res.Status != 75 {
		t.Errorf("failing helper: %+v %v", res, err)
	}
	if _, _, err := deliver("root"); err == nil || !strings.Contains(err.Error(), "refusing to deliver as root") {
		t.Errorf("as root: %v", err)
	}
	if _, _, err := deliver("no-such-user-here"); err == nil || !strings.Contains(err.Error(), "unknown user") {
		t.Errorf("unknown user: %v", err)
	}
	cconn.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Error("the server did not end when the child closed its end")
	}
}
