// Command sluice is a mail transfer agent with a queue its operators can
// see into and steer. One binary plays every part; it picks the part by
// the name it is run as (mailq, postqueue, qshape, postcat, postsuper,
// sendmail, ...) or by its first argument (sluice mailq ...).
package main

import (
	"os"

	"sluice/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
