// Package topic holds all MQTT topic logic of Relay: validation of topic
// names and filters, wildcard matching, filter containment for the
// SUBSCRIBE ACL, shared/queue/local subscription prefixes, and the mapping
// between MQTT topic names and NATS subjects. It imports only the standard
// library.
//
// # Matching
//
// [Match] implements MQTT 3.1.1 §4.7 (identical in MQTT 5.0 §4.7): a topic
// is split at every '/' into levels, empty levels included ("a//b" has three
// levels, "/a" has two, the first empty). '+' matches exactly one level,
// '#' matches its parent level and every level below it ("sport/#" matches
// "sport"). A filter whose first level is a wildcard does not match a topic
// name that starts with '$' [MQTT-4.7.2-1]. Matching is byte-wise and
// case-sensitive. PUBLISH authorization uses Match(grant, topic).
//
// [Subset] decides filter containment exactly: Subset(requested, granted)
// is true if and only if every valid topic name matched by requested is
// also matched by granted. SUBSCRIBE authorization uses it, so a grant of
// "a/+/c" never lets a client subscribe to "a/#".
//
// # MQTT topic ⇄ NATS subject mapping
//
// Every MQTT message is published on the NATS backbone under a subject
// whose tail is derived from the topic name. NATS subjects are
// '.'-separated tokens; a token must be non-empty and free of whitespace,
// and the tokens "*" and ">" are wildcards. The mapping is:
//
//  1. The topic is split into levels at '/'. Every level becomes exactly one
//     token, and tokens are joined with '.'; the tail has no leading or
//     trailing '.'.
//  2. Inside a level, the bytes '%' (0x25), '.' (0x2E), '*' (0x2A),
//     '>' (0x3E), every byte <= 0x20 and 0x7F are written as '%' followed by
//     two upper-case hexadecimal digits: "." → "%2E", " " → "%20",
//     "%" → "%25", "*" → "%2A", ">" → "%3E". Every other byte is copied
//     unchanged, including '$' and the bytes of UTF-8 multi-byte sequences.
//  3. An empty level becomes the single token "%". This is unambiguous
//     because a literal '%' is always escaped as "%25".
//
// Examples:
//
//	MQTT topic   NATS subject tail
//	a/b          a.b
//	/a           %.a
//	a//b/        a.%.b.%
//	v1.2/x y     v1%2E2.x%20y
//	*/>          %2A.%3E
//	$SYS/uptime  $SYS.uptime
//
// The encoding is canonical: [AppendSubject] writes exactly one subject for
// each valid topic name and [DecodeSubject] accepts exactly those subjects
// (only upper-case escapes, only of the bytes listed in rule 2, no raw
// '/', '+', '#' or bytes that must be escaped), so the mapping is a
// bijection between valid topic names and accepted subject tails, and
// DecodeSubject(AppendSubject(t)) == t for every valid topic t. A topic
// starts with '$' if and only if its subject tail does, because '$' is
// copied unchanged.
//
// Filters map level by level: '+' becomes the token "*", a literal level is
// escaped as above, and a trailing '#' becomes two subscriptions, one on the
// parent subject and one on parent+".>", because the NATS token ">" matches
// one or more tokens but, unlike MQTT's '#', not zero. A filter that is just
// "#" maps to ">" alone (every topic has at least one level). [FilterSubjects]
// returns these subject tails; the sets they match are disjoint, so a
// message is delivered at most once per filter. NATS wildcards know nothing
// of MQTT's '$' rule: when [NeedsDollarCheck] reports true for a filter,
// deliveries on its subjects whose tail starts with '$' must be dropped.
//
// Escaping can triple the length of a topic ([SubjectLen] reports the exact
// length). nats-server closes a client connection whose protocol line
// exceeds max_control_line (4096 bytes by default), which a single PUB with a
// long subject does; callers must bound subject length or raise the limit.
package topic
