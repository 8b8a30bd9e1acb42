package cli

import (
	"fmt"
	"strings"
)

// mailqHelp is mailq's manual, as `sluice help mailq` shows it.
const mailqHelp = `usage: mailq [-v] [-C config_dir]

List the mail queue, as Postfix's mailq (sendmail -bp), in the same
format as postqueue -p.

  -C dir, -c dir  read main.cf from dir (also MAIL_CONFIG)
  -v              accepted and ignored

Other sendmail options are accepted and ignored, as Postfix's sendmail
ignores them in this mode.
`

// sendmailArgOptions are the sendmail options that take an argument, so
// that mailq skips their arguments instead of taking them for recipients.
const sendmailArgOptions = "BCFLNORVXbcfhopr"

// Postfix's sendmail exits with EX_TEMPFAIL (75) on fatal errors.
const exitTempFail = 75

// runMailq is mailq(1), Postfix's sendmail -bp: it lists the queue as
// postqueue -p does. It takes no operands.
func runMailq(env *Env) int {
	if len(env.Args) == 1 && env.Args[0] == "--help" {
		fmt.Fprint(env.Stdout, mailqHelp)
		return 0
	}
	var configDir string
	args := env.Args
	operands := false
	for i := 0; i < len(args) && !operands; i++ {
		a := args[i]
		if a == "--" {
			operands = i+1 < len(args)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			operands = true
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if !strings.ContainsRune(sendmailArgOptions, rune(c)) {
				continue // -v, and the flags sendmail ignores in this mode
			}
			val := a[j+1:]
			if val == "" && i+1 < len(args) {
				i++
				val = args[i]
			}
			if c == 'C' || c == 'c' {
				configDir = val
			}
			break
		}
	}
	if operands {
		return env.Fatalf(exitTempFail, "display queue mode requires no recipient")
	}
	cfg, err := env.LoadConfig(configDir)
	if err != nil {
		return env.Fatalf(exitTempFail, "%s", configError(err))
	}
	return listQueue(env, cfg, false)
}
