// Package postcat renders Postfix queue files the way Postfix 3.7's
// postcat(1) does, byte for byte, including its warnings and the places
// where it gives up. The command line lives in internal/cli; this package
// is the reader, the state machine and the output.
//
// # What is printed
//
// A file is a sequence of records (reference §2). Envelope and extracted
// records print as "label: value"; the labels are Postfix 3.7's record
// names (see recordName), and a type without a name prints as
// "unknown_record_type". T and W records and the create_time attribute
// print their seconds through asctime(localtime()), so the zone is the
// one in Options.Location. Content lines (N) print bare; an L record in
// the content is the first part of a long line and prints without a
// newline, except with -o or -v, where every record gets its own line.
// Markers print as "*** MESSAGE CONTENTS path ***" (M), "*** HEADER
// EXTRACTED path ***" (X) and "*** MESSAGE FILE END path ***" (E), and
// "*** ENVELOPE RECORDS path ***" opens the file; all four only with -e.
// -o prefixes "%9lu " with the offset at which the read of the record
// started (skipped padding and followed pointers are not counted), -d
// prefixes "%3d " with the type byte.
//
// Text values are C strings: a NUL inside a record ends the value, except
// for N, L and w records, which are written with their full length.
//
// # The state machine
//
// The reader is in one of three states: envelope, header, body. M enters
// the header; the first text record in the header that is neither a
// header line (a name of printable ASCII other than ':' and white space,
// optional blanks, then ':') nor a continuation (leading SP or TAB), and
// that does not follow an L record whose text was joined to it, starts
// the body; X returns to the envelope state; E ends the file. What is
// printed depends on the state and on -e/-h/-b (all three by default).
// Records of every other type are printed in whatever state they appear.
//
// The C record is parsed with sscanf("%ld %ld") for the content length
// and offset. Without -e postcat seeks straight to the content; with -e
// but without -h/-b it skips the content by seeking past it. These seeks
// are taken even when the size record is nonsense, exactly as postcat
// takes them; where that makes postcat loop for ever (a size record of
// "0 0" with -e), this package gives up after maxSkipSeeks seeks with a
// fatal error instead.
//
// # Reading
//
// By default the reader follows p (pointer) records, skips w (padding)
// records and, after E, moves to the end of the file. With -v it does none
// of this: p and w records are shown, postcat itself follows pointers
// unless -r is given, and with -r it goes on reading after E. A pointer
// whose target is at or before the previous target counts as a reverse
// jump; more than 10,000 of them end the file with an error. That count
// belongs to the file name and carries over when the same name is read
// again, as Postfix's does.
//
// Damaged files end with the warning postcat gives ("unexpected EOF in
// data, record type 78 length 48", "too many length bits", "illegal
// length", "malformed pointer record value") followed by the fatal error
// "record read error". A file whose first byte is not an envelope record
// type is skipped with "input is not a valid queue file".
//
// # Output buffering
//
// postcat writes through a 4096-byte stdio-like buffer that it flushes
// after each record it prints, and never at exit. Whatever is still in the
// buffer when it exits is lost: the "ENVELOPE RECORDS" banner of an empty
// file, the newline that would end a trailing L line when -e is off, and
// everything of a file whose first record is damaged. Output reproduces
// that, so a run that ends in a fatal error prints exactly what postcat
// prints.
//
// # Deliberate differences
//
// Where postcat crashes (a time stamp whose year does not fit in a C int)
// or loops for ever (see above), this package stops with a fatal error.
// The debug lines that -v makes Postfix's configuration code print on
// stderr are not reproduced.
package postcat
