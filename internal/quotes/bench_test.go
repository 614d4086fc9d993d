package quotes

import "testing"

// BenchmarkParse parses and checks one provider answer, as every quote of a
// daily sync does.
func BenchmarkParse(b *testing.B) {
	body := []byte(goodBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse(body, "AAPL", "2026-11-20"); err != nil {
			b.Fatal(err)
		}
	}
}
