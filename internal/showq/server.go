package showq

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
)

// The showq service: what Postfix's postqueue -p and -j (and mailq)
// read from public/showq. With it, Postfix's own postqueue lists a
// spool that a sluice daemon runs; without it postqueue, finding no
// socket, would run Postfix's showq program on the files itself (as
// root) and fail on a live sluice spool.
//
// The stream is Postfix's attribute protocol in its "attr0" form: each
// attribute is its name, a NUL, its value and a NUL (numbers in
// decimal); a lone NUL ends a group. The server speaks first:
//
//	protocol=mail_queue_list_protocol  END
//	per message:  queue_name queue_id time size forced_expire sender
//	              { recipient reason }...  END
//	END (after the last message)
//
// The values are showq's display forms, which Message holds: postqueue
// formats them for -p or -j. showq takes no input from the client.

// ProtocolName is the protocol announcement of the showq service.
const ProtocolName = "mail_queue_list_protocol"

// WriteProtocol writes messages to w as Postfix's showq service does.
// scan calls emit once per message, in listing order.
func WriteProtocol(w io.Writer, scan func(emit func(*Message) error) error) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	attr(bw, "protocol", ProtocolName)
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return err
	}
	err := scan(func(m *Message) error {
		attr(bw, "queue_name", m.Queue)
		attr(bw, "queue_id", m.ID)
		attr(bw, "time", strconv.FormatInt(m.Arrival, 10))
		attr(bw, "size", strconv.FormatInt(m.Size, 10))
		fe := "0"
		if m.ForcedExpire {
			fe = "1"
		}
		attr(bw, "forced_expire", fe)
		attr(bw, "sender", m.Sender)
		for _, r := range m.Recipients {
			attr(bw, "recipient", r.Address)
			attr(bw, "reason", r.Reason)
		}
		return bw.WriteByte(0)
	})
	if err != nil {
		// A listing cut short must not look complete: the client sees
		// the stream end without the final terminator.
		bw.Flush()
		return err
	}
	bw.WriteByte(0)
	return bw.Flush()
}

// attr writes name=value in attr0 form. A NUL inside a value would end
// it early; display forms have none (they are made printable), but a
// stray one is replaced rather than trusted.
func attr(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	w.WriteByte(0)
	for i := 0; i < len(value); i++ {
		if value[i] == 0 {
			w.WriteByte('?')
		} else {
			w.WriteByte(value[i])
		}
	}
	w.WriteByte(0)
}

// Serve answers every connection on l with the listing scan produces
// (see WriteProtocol), one connection at a time per goroutine, until l
// is closed. allow, when set, is asked with the connection before
// anything is sent; a refused client is disconnected.
func Serve(l net.Listener, allow func(net.Conn) bool, scan func(emit func(*Message) error) error) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			if allow != nil && !allow(c) {
				return
			}
			WriteProtocol(c, scan)
		}()
	}
}
