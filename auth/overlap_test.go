package auth

import (
	"testing"

	"github.com/relaymq/relay/broker/topic"
)

func TestOverlapExhaustive(t *testing.T) {
	filters := genFilters([]string{"a", "$s", "", "+", "#"}, 4)
	topics := genTopics([]string{"a", "$s", "", "z"}, 4)
	t.Logf("%d filters, %d topics", len(filters), len(topics))
	matches := make([][]bool, len(filters))
	for i, f := range filters {
		matches[i] = make([]bool, len(topics))
		for j, tp := range topics {
			matches[i][j] = topic.Match(f, tp)
		}
	}
	for i, a := range filters {
		for k, b := range filters {
			var witness []byte
			for j, tp := range topics {
				if matches[i][j] && matches[k][j] {
					witness = tp
					break
				}
			}
			if got := topic.Overlap(a, b); got != (witness != nil) {
				t.Errorf("topic.Overlap(%q, %q) = %v; witness %q", a, b, got, witness)
			}
		}
	}
}
