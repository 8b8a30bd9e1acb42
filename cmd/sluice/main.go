// Command sluice is a mail transfer agent with a queue its operators can
// see into and steer. One binary plays every part; it picks the part by
// the name it is run as (mailq, postqueue, qshape, postcat, postsuper,
// sendmail, ...) or by its first argument (sluice mailq ...).
package main

import (
	"os"

	"sluice/internal/cli"
	"sluice/internal/privsep"
)

func main() {
	// Run set-group-ID (the sluice-postdrop copy), the binary does
	// nothing but the helper's two jobs, whatever it was called.
	if privsep.IsSetgid() {
		os.Exit(privsep.SetgidMain(os.Args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
