package topic

import "strings"

// Overlap reports whether some valid topic name is matched by both filters
// a and b (Match semantics, including '#' matching its parent level
// and the '$' rule [MQTT-4.7.2-1]). It is exact for valid filters:
//
//	Overlap("a/+", "+/b")     == true  // "a/b"
//	Overlap("a/#", "a")       == true  // '#' includes the parent [MQTT-4.7.1-2]
//	Overlap("#", "$SYS/x")    == false // [MQTT-4.7.2-1]
//	Overlap("/#", "+")        == false // the only candidate is the empty topic
//	Overlap("a/+/c", "a/b")   == false
//
// The SUBSCRIBE ACL uses it for deny rules: a requested filter is refused
// if any topic it could deliver is denied. Overlap returns false when
// either argument is not a valid filter. It does not allocate.
func Overlap(a, b string) bool {
	if ValidateFilter(a) != nil || ValidateFilter(b) != nil {
		return false
	}
	return overlap(a, b)
}

// overlap is Overlap for filters known to be valid. It walks both filters
// level by level, building (implicitly) a topic both match: a literal level
// where either has one, "x" where both have '+'.
func overlap(a, b string) bool {
	for level := 0; ; level++ {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			// '#' matches whatever the other filter has from here on, which
			// always has a non-empty instance; only the '$' rule can stop
			// it, at the first level.
			other := bl
			if bl == "#" {
				other = al
			}
			return level > 0 || !isDollar(other)
		}
		if level == 0 && ((al == "+" && isDollar(bl)) || (bl == "+" && isDollar(al))) {
			return false // [MQTT-4.7.2-1]
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			// b goes on: only a final "/#" still matches, by matching its
			// parent, the topic a ends with. At the first level that topic
			// is this single level, which must not be empty [MQTT-4.7.3-1]
			// (a is not empty, so only b's level can force it).
			return brest == "#" && (level > 0 || bl != "")
		case !bmore:
			return arest == "#" && (level > 0 || al != "")
		}
		a, b = arest, brest
	}
}

// isDollar reports whether a filter level is a literal starting with '$'.
func isDollar(level string) bool { return len(level) > 0 && level[0] == '$' }
