package manage

import "sluice/internal/event"

// Reason classes are decided once, by event.Classify over the structured
// failure (reply code, enhanced status, text, or the agent's kind of
// failure), where the reply is known and, for mail read back from the
// files, from the defer log's structured fields (event.LogFailure). manage
// only passes the class on.

// ClassNames returns the class names, sorted.
func ClassNames() []string { return event.ClassNames() }

// ClassDescription explains a class.
func ClassDescription(class string) string { return event.ClassDescription(class) }

func isClass(c string) bool { return event.ClassDescription(c) != "" }

// ReasonClass is the class of the recipient's last deferral: Class when
// the reader set it (the reason text itself may then be left out, as the
// daemon's model does for texts it keeps on disk only), else rebuilt
// from the reason and DSN status alone (a Message made by hand, or by a
// reader of an older wire format); "" when there is no reason yet.
func (r *Recipient) ReasonClass() string {
	if r.Class != "" {
		return r.Class
	}
	if r.Reason == "" {
		return ""
	}
	return event.Classify(event.LogFailure(r.Status, "", "", r.Reason))
}

// classOf is the class of a defer-log entry.
func classOf(status, diagType, diagText, reason string) string {
	return event.Classify(event.LogFailure(status, diagType, diagText, reason))
}
