package stocks

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzReadCSV feeds ReadCSV arbitrary files. It never panics; what it
// accepts the stocks table takes: at least one stock, every symbol of the
// form the table's CHECK holds and none twice, every name and exchange valid
// UTF-8 without control characters and at most maxText characters.
//
// CI runs it briefly (scripts/dev test); run it longer with
//
//	go test -run '^$' -fuzz '^FuzzReadCSV$' -fuzztime 2000000x ./internal/stocks
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"symbol\naapl\n MSFT \n\nbrk.b\n",
		"Active,Exchange,SYMBOL,Name\nfalse,NYSE,ibm,International Business Machines\ntrue,,bf-b,\n",
		"\ufeffsymbol\nA\n",
		"symbol,name\nAAPL,\"Robert'); DROP TABLE stocks;--\"\n",
		"symbol\nx'; DROP TABLE stocks;--\n",
		"symbol,name\nAAPL,App\x00le\n",
		"symbol,name\nAAPL,caf\xe9\n",
		"symbol,symbol\nA,B\n",
		"symbol,active\nAAPL,sometimes\n",
		"symbol,name\nAAPL,\"unterminated\n",
		"symbol\nAAPL\naapl\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		list, err := ReadCSV(strings.NewReader(string(in)))
		if err != nil {
			if list != nil {
				t.Fatalf("ReadCSV returned %d stocks with the error %v", len(list), err)
			}
			return
		}
		if len(list) == 0 {
			t.Fatal("ReadCSV accepted a file without stocks")
		}
		seen := map[string]bool{}
		for _, s := range list {
			if !symbolPattern.MatchString(s.Symbol) || seen[s.Symbol] {
				t.Fatalf("ReadCSV accepted the symbol %q (seen before: %v)", s.Symbol, seen[s.Symbol])
			}
			seen[s.Symbol] = true
			for _, text := range []string{s.Name, s.Exchange} {
				if !utf8.ValidString(text) || strings.ContainsFunc(text, unicode.IsControl) || utf8.RuneCountInString(text) > maxText {
					t.Fatalf("ReadCSV accepted the text %q", text)
				}
			}
		}
	})
}
