package etl

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// mapLookup is lookup as it was, by decoding each object on the path into a
// map: the reference that FuzzLookup holds the scanner to.
func mapLookup(doc json.RawMessage, path string) (json.RawMessage, error) {
	cur := doc
	for seg := range strings.SplitSeq(path, ".") {
		var obj map[string]json.RawMessage
		if len(cur) == 0 || cur[0] != '{' || json.Unmarshal(cur, &obj) != nil {
			return nil, errMissing
		}
		v, ok := obj[seg]
		if !ok {
			return nil, errMissing
		}
		cur = v
	}
	return cur, nil
}

// FuzzLookup checks that the scanner finds in any valid JSON document what
// decoding finds: lookup what a map holds, elements what a slice of raw
// messages holds, compact what json.Compact writes; and that it does not
// panic on anything else.
//
//	go test -run '^$' -fuzz '^FuzzLookup$' -fuzztime 500000x ./internal/etl
func FuzzLookup(f *testing.F) {
	for _, seed := range []struct{ doc, path string }{
		{`{"items":[{"id":"a"}],"total":1}`, "items"},
		{`{ "data" : { "rows" : [ 1 , "x" , {"a":[]} ] } , "data":{"rows":[2]} }`, "data.rows"},
		{`{"a\u0062":1,"ab":2}`, "ab"},
		{`{"k\"ey":{"in":"va}l\\"}}`, `k"ey.in`},
		{`{"é":true,"\u00e9":false}`, "é"},
		{"{\"x\":\"\xff\"}", "x"},
		{`{"n":-1.5e3,"m":null}`, "m"},
		{`[1,2]`, "a"},
		{`"text"`, "a"},
		{`{}`, ""},
	} {
		f.Add([]byte(seed.doc), seed.path)
	}
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		if !json.Valid(doc) {
			// Not what it is for, but it must not panic on it either.
			_, _ = lookup(doc, path)
			if len(doc) > 0 {
				_ = elements(doc)
			}
			return
		}
		want, wantErr := mapLookup(doc, path)
		got, err := lookup(doc, path)
		if (err == nil) != (wantErr == nil) || (err != nil && !errors.Is(err, errMissing)) {
			t.Fatalf("lookup(%q, %q) = %q, %v; decoding finds %q, %v", doc, path, got, err, want, wantErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("lookup(%q, %q) = %q; decoding finds %q", doc, path, got, want)
		}
		if trimmed := bytes.TrimSpace(doc); len(trimmed) > 0 && trimmed[0] == '[' {
			var wantElems []json.RawMessage
			if err := json.Unmarshal(trimmed, &wantElems); err != nil {
				t.Fatal(err)
			}
			gotElems := elements(trimmed)
			if len(gotElems) != len(wantElems) {
				t.Fatalf("elements(%q) = %q; decoding finds %q", trimmed, gotElems, wantElems)
			}
			for i := range gotElems {
				if !bytes.Equal(gotElems[i], wantElems[i]) {
					t.Fatalf("elements(%q)[%d] = %q; decoding finds %q", trimmed, i, gotElems[i], wantElems[i])
				}
			}
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, doc); err != nil {
			t.Fatal(err)
		}
		if got, err := compact(doc); err != nil || !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("compact(%q) = %q, %v; json.Compact writes %q", doc, got, err, buf.Bytes())
		}
	})
}
