package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sluice/internal/config"
	"sluice/internal/smtpd"
	"sluice/internal/spool"
)

// settings are the parameters the daemon runs with, read and checked
// once, so that a bad value stops the start with a clear message instead
// of surfacing later.
type settings struct {
	queueDir       string
	hashQueues     string
	hashDepth      int
	longIDs        bool
	myHostname     string
	myOrigin       string
	listen         []string // every smtpd service's addresses: smtpd_listen's first
	services       []smtpd.Service
	mynetworks     []string
	relayHost      string
	sizeLimit      int64
	maxLifetime    time.Duration
	bounceLifetime time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	queueRunDelay  time.Duration
	delayWarning   time.Duration
	commit         string // sluice_commit_method
	concLimit      int
	initialConc    int
	rcptLimit      int
	processLimit   int
	activeLimit    int
	bounceSize     int
	hopLimit       int // hopcount_limit
	connectTimeout time.Duration
	tlsLevel       string
	maillogFile    string
	syslogName     string
	grace          time.Duration // sluice_shutdown_grace
}

// check validates every parameter set in main.cf: unknown names are an
// error (a typo would otherwise be ignored silently), and so are values
// that do not parse as the parameter's kind (number, time, yes/no).
func check(c *config.Config) error {
	var errs []error
	for _, u := range c.Unknown() {
		errs = append(errs, fmt.Errorf("unknown parameter %s", u))
	}
	for _, p := range config.Params {
		v := c.Get(p.Name)
		switch kind(p) {
		case "time":
			if _, err := c.Duration(p.Name); err != nil {
				errs = append(errs, err)
			}
		case "int":
			if _, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
				errs = append(errs, fmt.Errorf("bad numerical parameter value: %s = %s", p.Name, v))
			}
		case "bool":
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "yes", "no", "true", "false", "on", "off", "1", "0":
			default:
				errs = append(errs, fmt.Errorf("bad boolean parameter value: %s = %s (use yes or no)", p.Name, v))
			}
		}
	}
	if m := c.Get("sluice_commit_method"); m != "fsync" && m != "syncfs" {
		errs = append(errs, fmt.Errorf("bad parameter value: sluice_commit_method = %s (fsync or syncfs)", m))
	}
	if lvl := c.Get("smtp_tls_security_level"); lvl != "" && lvl != "none" && lvl != "may" && lvl != "encrypt" {
		errs = append(errs, fmt.Errorf("bad parameter value: smtp_tls_security_level = %s (none, may or encrypt)", lvl))
	}
	return errors.Join(errs...)
}

// kind guesses a parameter's kind from its default: time parameters have
// a unit; all-digit defaults are numbers; yes/no defaults are booleans.
func kind(p config.Param) string {
	d := strings.TrimSpace(p.Default)
	switch {
	case p.Unit != 0:
		return "time"
	case d == "yes" || d == "no":
		return "bool"
	case d != "" && strings.Trim(d, "0123456789") == "":
		return "int"
	}
	if _, err := config.ParseDuration(d, 's'); err == nil && strings.ContainsAny(d[len(d)-1:], "smhdw") {
		return "time"
	}
	return ""
}

func load(c *config.Config) (*settings, error) {
	if err := check(c); err != nil {
		return nil, err
	}
	s := &settings{
		queueDir:    c.Get("queue_directory"),
		hashQueues:  c.Get("hash_queue_names"),
		longIDs:     c.Bool("enable_long_queue_ids"),
		myHostname:  c.Get("myhostname"),
		myOrigin:    c.Get("myorigin"),
		mynetworks:  c.List("mynetworks"),
		relayHost:   c.Get("relayhost"),
		tlsLevel:    c.Get("smtp_tls_security_level"),
		maillogFile: c.Get("maillog_file"),
		syslogName:  get(c, "syslog_name", "postfix"),
		commit:      c.Get("sluice_commit_method"),
	}
	if s.queueDir == "" {
		return nil, errors.New("queue_directory is empty")
	}
	ints := []struct {
		name string
		dst  any
	}{
		{"hash_queue_depth", &s.hashDepth},
		{"message_size_limit", &s.sizeLimit},
		{"default_destination_concurrency_limit", &s.concLimit},
		{"initial_destination_concurrency", &s.initialConc},
		{"default_destination_recipient_limit", &s.rcptLimit},
		{"default_process_limit", &s.processLimit},
		{"qmgr_message_active_limit", &s.activeLimit},
		{"bounce_size_limit", &s.bounceSize},
		{"hopcount_limit", &s.hopLimit},
	}
	for _, i := range ints {
		n, err := c.Int(i.name)
		if err != nil {
			return nil, err
		}
		switch p := i.dst.(type) {
		case *int:
			*p = int(n)
		case *int64:
			*p = n
		}
	}
	times := []struct {
		name string
		dst  *time.Duration
	}{
		{"maximal_queue_lifetime", &s.maxLifetime},
		{"bounce_queue_lifetime", &s.bounceLifetime},
		{"minimal_backoff_time", &s.minBackoff},
		{"maximal_backoff_time", &s.maxBackoff},
		{"queue_run_delay", &s.queueRunDelay},
		{"delay_warning_time", &s.delayWarning},
		{"smtp_connect_timeout", &s.connectTimeout},
		{"sluice_shutdown_grace", &s.grace},
	}
	for _, t := range times {
		d, err := c.Duration(t.name)
		if err != nil {
			return nil, err
		}
		*t.dst = d
	}
	svcs, err := smtpd.Services(c)
	if err != nil {
		return nil, err
	}
	s.services = svcs
	for _, svc := range svcs {
		s.listen = append(s.listen, svc.Listen...)
	}
	if len(s.listen) == 0 {
		return nil, errors.New("smtpd_listen is empty: nothing to listen on")
	}
	return s, nil
}

func get(c *config.Config, name, def string) string {
	if v, ok := c.Raw(name); ok && v != "" {
		return c.Get(name)
	}
	return def
}

// spool returns the spool the settings name.
func (s *settings) spool() *spool.Spool {
	sp := spool.New(s.queueDir)
	sp.SetHashQueues(s.hashQueues)
	sp.HashDepth = s.hashDepth
	sp.LongIDs = s.longIDs
	return sp
}

// Check validates a configuration as the daemon's start does: for
// `sluice serve` to refuse a bad reload before stopping anything.
func Check(c *config.Config) error {
	_, err := load(c)
	return err
}
