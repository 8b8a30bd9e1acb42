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
	buf := appendProtocolStart(nil)
	bw.Write(buf)
	if err := bw.Flush(); err != nil {
		return err
	}
	err := scan(func(m *Message) error {
		buf = appendProtocol(buf[:0], m)
		_, err := bw.Write(buf)
		return err
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

// appendProtocolStart appends the protocol announcement.
func appendProtocolStart(b []byte) []byte {
	return append(appendAttr(b, "protocol", ProtocolName), 0)
}

// appendProtocol appends one message's attribute group.
func appendProtocol(b []byte, m *Message) []byte {
	b = appendAttr(b, "queue_name", m.Queue)
	b = appendAttr(b, "queue_id", m.ID)
	b = append(b, "time\x00"...)
	b = strconv.AppendInt(b, m.Arrival, 10)
	b = append(b, "\x00size\x00"...)
	b = strconv.AppendInt(b, m.Size, 10)
	b = append(b, "\x00forced_expire\x00"...)
	if m.ForcedExpire {
		b = append(b, '1', 0)
	} else {
		b = append(b, '0', 0)
	}
	b = appendAttr(b, "sender", m.Sender)
	for i := range m.Recipients {
		b = appendAttr(b, "recipient", m.Recipients[i].Address)
		b = appendAttr(b, "reason", m.Recipients[i].Reason)
	}
	return append(b, 0)
}

// appendAttr appends name=value in attr0 form. A NUL inside a value
// would end it early; display forms have none (they are made printable),
// but a stray one is replaced rather than trusted.
func appendAttr(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, 0)
	start := len(b)
	b = append(b, value...)
	for i := start; i < len(b); i++ {
		if b[i] == 0 {
			b[i] = '?'
		}
	}
	return append(b, 0)
}

// Serve answers every connection on l with the listing list writes in
// the showq protocol (see WriteProtocol and Lister.Write), one
// connection at a time per goroutine, until l is closed. allow, when
// set, is asked with the connection before anything is sent; a refused
// client is disconnected.
func Serve(l net.Listener, allow func(net.Conn) bool, list func(w io.Writer) error) error {
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
			list(c)
		}()
	}
}
