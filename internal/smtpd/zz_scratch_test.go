package smtpd

import (
	"os"
	"testing"
	"time"
)

func TestScratchServe(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		t.Skip()
	}
	h := start(t, func(c *Config) {
		c.Listen = []string{"127.0.0.1:10026"}
		c.Banner = "facts.test ESMTP Postfix"
		c.Timeout = 5 * time.Second
	})
	_ = h
	time.Sleep(120 * time.Second)
	os.WriteFile("/tmp/probe/sluice.log", []byte(h.log.String()), 0o644)
}
