// Package cli holds the command lines of sluice's tools. The binary picks
// a tool by the name it was invoked as (a link named mailq runs mailq) or
// by its first argument (sluice mailq ...). Each tool is a Command in the
// table that commands() returns; its help text lives beside it.
package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sluice/internal/config"
	"sluice/internal/manage"
	"sluice/internal/spool"
)

// Env is what a tool runs with: its name, arguments and standard streams.
// Tools never touch os.Args, os.Stdout or os.Exit directly, so tests run
// them in-process.
type Env struct {
	Name   string // the name the tool was invoked as, for messages
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// Command is one tool.
type Command struct {
	Name    string
	Summary string
	Run     func(env *Env) int // returns the exit status
	// Help is the command's manual: `sluice help NAME` prints it, and the
	// command's own --help (or -h) prints the same text.
	Help string
	// Hidden commands are parts of the daemon, not tools: the usage
	// list leaves them out.
	Hidden bool
}

// commands lists every tool; Main dispatches through it. Add a tool here.
func commands() []*Command {
	return []*Command{
		{Name: "sendmail", Summary: "queue a message from standard input (-t -f -F -i -bs -bp), as Postfix's sendmail", Run: runSendmail, Help: sendmailHelp},
		{Name: "postconf", Summary: "print configuration parameters (-n, -d, -h, -x, names)", Run: runPostconf, Help: postconfHelp},
		{Name: "mailq", Summary: "list the mail queue (sendmail -bp)", Run: runMailq, Help: mailqHelp},
		{Name: "postqueue", Summary: "list (-p, -j) or flush the mail queue", Run: runPostqueue, Help: postqueueHelp},
		{Name: "qshape", Summary: "queue shape: messages by domain and age (Postfix qshape)", Run: runQshape, Help: qshapeUsage},
		{Name: "postsuper", Summary: "delete, hold, release, expire or requeue queued mail (Postfix's flags)", Run: runPostsuper, Help: postsuperHelp},
		{Name: "queue", Summary: "list, count, summarize, show and act on queued mail with one selector", Run: runQueue, Help: fmt.Sprintf(queueHelp, strings.Join(manage.ClassNames(), ", "))},
		{Name: "serve", Summary: "run the mail system: SMTP intake, queue manager, delivery, bounces", Run: runServe, Help: serveHelp},
		{Name: "postcat", Summary: "print queue files in human-readable form (Postfix's postcat: -q -e -h -b -o -d -r -s -v)", Run: runPostcat, Help: postcatUsage + "\n"},
		{Name: "newaliases", Summary: "check the alias files (alias_database) and report problems with file and line; builds nothing", Run: runNewaliases, Help: newaliasesHelp},
		{Name: "probe", Summary: "check whether mail can reach a destination, as delivery would go, without sending any", Run: runProbe, Help: probeHelp},
		{Name: "install", Summary: "install the binary, the setgid helper, the Postfix command links and a systemd unit", Run: runInstall, Help: installHelp},
		{Name: "inject", Summary: "write a queue file from an envelope and a message (tests, demos)", Run: runInject, Help: injectHelp},
		{Name: "local-deliver", Summary: "the local delivery agent of a privilege-separated daemon (run by its root master)", Run: runLocalDeliver, Help: localDeliverHelp, Hidden: true},
	}
}

func lookup(name string) *Command {
	for _, c := range commands() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Main runs the tool named by argv[0], or by argv[1] when argv[0] is
// "sluice", and returns the exit status.
func Main(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	args := argv[1:]
	if lookup(name) == nil {
		if len(args) == 2 && args[0] == "help" {
			cmd := lookup(args[1])
			if cmd == nil {
				fmt.Fprintf(stderr, "sluice: unknown command %q\n", args[1])
				usage(stderr)
				return 2
			}
			fmt.Fprint(stdout, strings.TrimRight(cmd.Help, "\n")+"\n")
			return 0
		}
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			usage(stderr)
			if len(args) == 0 {
				return 2
			}
			return 0
		}
		name, args = args[0], args[1:]
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "sluice: unknown command %q\n", name)
		usage(stderr)
		return 2
	}
	return cmd.Run(&Env{Name: name, Args: args, Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sluice COMMAND [ARGS...]   (or run a link named COMMAND); sluice help COMMAND for its manual")
	fmt.Fprintln(w, "commands:")
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
}

// Fatalf prints "NAME: fatal: ..." as Postfix's tools do and returns the
// exit status to use.
func (e *Env) Fatalf(status int, format string, args ...any) int {
	fmt.Fprintf(e.Stderr, "%s: fatal: %s\n", e.Name, fmt.Sprintf(format, args...))
	return status
}

// Warnf prints "NAME: warning: ...".
func (e *Env) Warnf(format string, args ...any) {
	fmt.Fprintf(e.Stderr, "%s: warning: %s\n", e.Name, fmt.Sprintf(format, args...))
}

// LoadConfig loads the configuration named by -c (or MAIL_CONFIG, or the
// default directory).
func (e *Env) LoadConfig(dirFlag string) (*config.Config, error) {
	dir := dirFlag
	if dir == "" && e.Getenv != nil {
		dir = e.Getenv("MAIL_CONFIG")
	}
	if dir == "" {
		dir = config.DefaultDir
	}
	return config.Load(dir)
}

// OpenSpool returns the spool a configuration names.
func OpenSpool(c *config.Config) (*spool.Spool, error) {
	s := spool.New(c.Get("queue_directory"))
	s.SetHashQueues(c.Get("hash_queue_names"))
	depth, err := c.Int("hash_queue_depth")
	if err != nil {
		return nil, err
	}
	s.HashDepth = int(depth)
	s.LongIDs = c.Bool("enable_long_queue_ids")
	if s.Root == "" {
		return nil, fmt.Errorf("queue_directory is empty")
	}
	return s, nil
}
