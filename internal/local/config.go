package local

import (
	"fmt"
	"strings"

	"sluice/internal/config"
)

// FromConfig fills a Config from main.cf: myhostname, myorigin,
// mydestination, alias_maps, local_recipient_maps, recipient_delimiter,
// mail_spool_directory, home_mailbox, forward_path,
// allow_mail_to_commands, allow_mail_to_files, default_privs,
// mailbox_delivery_lock, deliver_lock_attempts, deliver_lock_delay,
// stale_lock_time, prepend_delivered_header, mailbox_size_limit,
// command_time_limit, propagate_unmatched_extensions and
// queue_directory (the commands' working directory). The caller adds
// Users, Forward, Now and Warn.
func FromConfig(c *config.Config) (Config, error) {
	cfg := Config{
		MyHostname:         c.Get("myhostname"),
		MyOrigin:           c.Get("myorigin"),
		MyDestination:      c.List("mydestination"),
		RecipientDelimiter: c.Get("recipient_delimiter"),
		SpoolDir:           c.Get("mail_spool_directory"),
		HomeMailbox:        c.Get("home_mailbox"),
		DefaultPrivs:       c.Get("default_privs"),
		CommandDir:         c.Get("queue_directory"),
		CommandsFrom:       set(c.List("allow_mail_to_commands")),
		FilesFrom:          set(c.List("allow_mail_to_files")),
		DeliveredTo:        set(c.List("prepend_delivered_header")),
		Propagate:          set(c.List("propagate_unmatched_extensions")),
	}
	var err error
	if cfg.AliasMaps, err = MapFiles(c.List("alias_maps")); err != nil {
		return cfg, fmt.Errorf("alias_maps: %w", err)
	}
	if cfg.LocalRecipientMaps, err = recipientMaps(c.List("local_recipient_maps")); err != nil {
		return cfg, fmt.Errorf("local_recipient_maps: %w", err)
	}
	// forward_path's $home, $user, ... are the recipient's, filled in at
	// delivery; main.cf's own $names are expanded now.
	raw, _ := c.Raw("forward_path")
	for _, p := range strings.Split(raw, ",") {
		for _, f := range strings.Fields(p) {
			cfg.ForwardPath = append(cfg.ForwardPath, f)
		}
	}
	for _, m := range c.List("mailbox_delivery_lock") {
		switch m {
		case "dotlock":
			cfg.Lock.Dotlock = true
		case "fcntl":
			cfg.Lock.Fcntl = true
		case "flock":
			cfg.Lock.Flock = true
		default:
			return cfg, fmt.Errorf("mailbox_delivery_lock: unknown locking method %q (dotlock, fcntl or flock)", m)
		}
	}
	n, err := c.Int("deliver_lock_attempts")
	if err != nil {
		return cfg, err
	}
	cfg.Lock.Attempts = int(n)
	if cfg.Lock.Delay, err = c.Duration("deliver_lock_delay"); err != nil {
		return cfg, err
	}
	if cfg.Lock.Stale, err = c.Duration("stale_lock_time"); err != nil {
		return cfg, err
	}
	if cfg.MailboxSizeLimit, err = c.Int("mailbox_size_limit"); err != nil {
		return cfg, err
	}
	if cfg.CommandTimeLimit, err = c.Duration("command_time_limit"); err != nil {
		return cfg, err
	}
	for _, list := range []map[string]bool{cfg.CommandsFrom, cfg.FilesFrom} {
		for k := range list {
			if k != classAlias && k != classForward && k != classInclude {
				return cfg, fmt.Errorf("allow_mail_to_commands/allow_mail_to_files: unknown class %q (alias, forward, include)", k)
			}
		}
	}
	return cfg, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, v := range list {
		m[strings.ToLower(v)] = true
	}
	return m
}

// MapFiles turns alias_maps entries into the source files to read.
func MapFiles(specs []string) ([]string, error) {
	var out []string
	for _, s := range specs {
		p, err := ParseMapSpec(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// recipientMaps reads local_recipient_maps: "unix:passwd.byname"
// (optionally behind "proxy:") is the user table, "passwd"; alias
// tables are their files. An empty value is nil: every address known.
func recipientMaps(specs []string) ([]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := []string{}
	for _, s := range specs {
		s = strings.TrimPrefix(s, "proxy:")
		if s == "unix:passwd.byname" {
			out = append(out, "passwd")
			continue
		}
		p, err := ParseMapSpec(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
