package showq

import "sluice/internal/spool"

// logEntry is one entry of a defer log as showq reads it. The slices
// point into the log buffer.
type logEntry struct {
	addr, reason, status, action []byte
}

// Placeholders Postfix's log reader puts in fields an entry lacks.
const (
	noReasonText    = "(description unavailable)"
	nullAddressText = "(MAILER-DAEMON)"
)

var (
	noAddress   = []byte("(recipient address unavailable)")
	noReason    = []byte(noReasonText)
	nullAddress = []byte(nullAddressText)
)

// parseDeferLog reads a defer log with spool.ScanLog the way Postfix's
// showq does and calls fn for every complete entry, in file order: an
// entry the end of the file cuts off is dropped; recipient and reason
// are used (an empty recipient becomes "(MAILER-DAEMON)"), status and
// action are kept for callers, other names are ignored; a missing
// recipient or reason gets a placeholder.
//
// Making a line printable changes only bytes that are not printable
// ASCII, and turns every white-space character but the space into '?'.
// So the fields found in the raw line are those of the printable line,
// and only the fields kept are made printable.
//
// buf is modified in place; scratch is as for spool.ScanLog.
func parseDeferLog(buf []byte, utf8 bool, scratch []spool.LogField, fn func(e *logEntry)) []spool.LogField {
	return spool.ScanLog(buf, scratch, func(fields []spool.LogField, complete bool) {
		if !complete {
			return
		}
		var e logEntry
		for _, f := range fields {
			var dst *[]byte
			switch string(f.Name) {
			case "recipient":
				dst = &e.addr
			case "reason":
				dst = &e.reason
			case "status":
				dst = &e.status
			case "action":
				dst = &e.action
			default:
				continue
			}
			makePrintable(f.Value, utf8)
			*dst = f.Value
			if dst == &e.addr && len(f.Value) == 0 {
				e.addr = nullAddress
			}
		}
		if len(e.addr) == 0 {
			e.addr = noAddress
		}
		if len(e.reason) == 0 {
			e.reason = noReason
		}
		fn(&e)
	})
}
