package showq

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestWriteProtocol: the attribute stream Postfix's postqueue reads from
// showq (TestShowqForPostfix in test/privsep has Postfix's postqueue
// read it from a live daemon).
func TestWriteProtocol(t *testing.T) {
	msgs := []*Message{
		{Queue: "deferred", ID: "4BA0C4BA0F7", Arrival: 1700000000, Size: 405, Sender: "b@example.org",
			Recipients: []Recipient{{Address: "a@example.com", Reason: "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"}, {Address: "c@example.com"}}},
		{Queue: "hold", ID: "ABC", Arrival: 1, Size: 2, ForcedExpire: true, Sender: "MAILER-DAEMON"},
	}
	var b bytes.Buffer
	err := WriteProtocol(&b, func(emit func(*Message) error) error {
		for _, m := range msgs {
			if err := emit(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a := func(kv ...string) string { return strings.Join(kv, "\x00") + "\x00" }
	const end = "\x00"
	hold := a("queue_name", "hold", "queue_id", "ABC", "time", "1", "size", "2", "forced_expire", "1", "sender", "MAILER-DAEMON") + end
	want := a("protocol", "mail_queue_list_protocol") + end +
		a("queue_name", "deferred", "queue_id", "4BA0C4BA0F7", "time", "1700000000", "size", "405", "forced_expire", "0", "sender", "b@example.org") +
		a("recipient", "a@example.com", "reason", "connect to 127.0.0.1[127.0.0.1]:9: Connection refused") +
		a("recipient", "c@example.com", "reason", "") + end +
		hold + end
	if b.String() != want {
		t.Errorf("stream:\n%q\nwant\n%q", b.String(), want)
	}
	// A scan that fails leaves the stream without its final terminator,
	// so a client cannot take a partial listing for a whole one.
	b.Reset()
	WriteProtocol(&b, func(emit func(*Message) error) error {
		emit(msgs[1])
		return errors.New("disk on fire")
	})
	if b.String() != a("protocol", "mail_queue_list_protocol")+end+hold {
		t.Errorf("failed scan ends like a complete one: %q", b.String())
	}
}
