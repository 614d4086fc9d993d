package stocks

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncworker/syncworker/internal/testenv"
)

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Stock
		wantErr string
	}{
		{name: "symbol only", in: "symbol\naapl\n MSFT \n\nbrk.b\n",
			want: []Stock{{Symbol: "AAPL", Active: true}, {Symbol: "MSFT", Active: true}, {Symbol: "BRK.B", Active: true}}},
		{name: "all columns any order and case", in: "Active,Exchange,SYMBOL,Name\nfalse,NYSE,ibm,International Business Machines\ntrue,,bf-b,\n",
			want: []Stock{{Symbol: "IBM", Name: "International Business Machines", Exchange: "NYSE"}, {Symbol: "BF-B", Active: true}}},
		{name: "byte order mark", in: "\ufeffsymbol\nA\n", want: []Stock{{Symbol: "A", Active: true}}},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "header only", in: "symbol\n", wantErr: "no stocks"},
		{name: "no symbol column", in: "ticker\nAAPL\n", wantErr: "no symbol column"},
		{name: "duplicate column", in: "symbol,symbol\nA,B\n", wantErr: "appears twice"},
		{name: "sql-looking symbol", in: "symbol\nAAPL\nx'; DROP TABLE stocks;--\n", wantErr: "line 3: invalid symbol"},
		{name: "too long", in: "symbol\nABCDEFGHIJKLMNOPQRSTUVWXYZ\n", wantErr: "line 2: invalid symbol"},
		{name: "empty symbol", in: "symbol,name\n,Nameless\n", wantErr: "line 2: invalid symbol"},
		{name: "repeat", in: "symbol\nAAPL\nMSFT\naapl\n", wantErr: "line 4: symbol AAPL repeats line 2"},
		{name: "bad active", in: "symbol,active\nAAPL,sometimes\n", wantErr: "line 2: active"},
		{name: "bad quoting", in: "symbol,name\nAAPL,\"unterminated\n", wantErr: "read csv"},
		{name: "unterminated quote in the first field", in: "symbol,name\n\"AAPL", wantErr: "read csv: parse error on line 2"},
		{name: "sql-looking name stored as it is", in: "symbol,name\nAAPL,\"Robert'); DROP TABLE stocks;--\"\n",
			want: []Stock{{Symbol: "AAPL", Name: "Robert'); DROP TABLE stocks;--", Active: true}}},
		{name: "sql-looking symbol with quotes", in: "symbol\n\"AAPL'--\"\n", wantErr: "line 2: invalid symbol \"AAPL'--\""},
		{name: "lower-case sql", in: "symbol\nselect\n1;drop\n", wantErr: "line 3: invalid symbol"},
		{name: "NUL in name", in: "symbol,name\nAAPL,App\x00le\n", wantErr: "line 2: name \"App\\x00le\" has control characters"},
		{name: "escape in exchange", in: "symbol,exchange\nAAPL,\x1b[2J\n", wantErr: "line 2: exchange"},
		{name: "invalid UTF-8 in name", in: "symbol,name\nAAPL,caf\xe9\n", wantErr: "line 2: name \"caf\\xe9\" is not valid UTF-8"},
		{name: "name too long", in: "symbol,name\nAAPL," + strings.Repeat("é", 201) + "\n", wantErr: "line 2: name \"éééééééééééééééééééé...\" is longer than 200"},
		{name: "long non-ASCII name fits", in: "symbol,name\nAAPL," + strings.Repeat("é", 200) + "\n",
			want: []Stock{{Symbol: "AAPL", Name: strings.Repeat("é", 200), Active: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadCSV error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ReadCSV = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUpsertAndActiveSymbols(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	res, err := Upsert(ctx, db.Pool, []Stock{{Symbol: "MSFT", Active: true}, {Symbol: "AAPL", Name: "Apple", Active: true}, {Symbol: "OLD", Active: false}})
	if err != nil {
		t.Fatal(err)
	}
	if res != (ImportResult{Inserted: 3}) {
		t.Errorf("first import = %+v", res)
	}
	res, err = Upsert(ctx, db.Pool, []Stock{{Symbol: "AAPL", Active: true}, {Symbol: "OLD", Active: true}, {Symbol: "NEW", Active: true}})
	if err != nil {
		t.Fatal(err)
	}
	if res != (ImportResult{Inserted: 1, Updated: 2}) {
		t.Errorf("second import = %+v", res)
	}
	var name string
	if err := db.Pool.QueryRow(ctx, `SELECT name FROM stocks WHERE symbol = 'AAPL'`).Scan(&name); err != nil || name != "Apple" {
		t.Errorf("an import without a name erased it: %q, %v", name, err)
	}
	syms, err := ActiveSymbols(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"AAPL", "MSFT", "NEW", "OLD"}; !reflect.DeepEqual(syms, want) {
		t.Errorf("ActiveSymbols = %v, want %v", syms, want)
	}
}

func TestUpsertPricesIsBulkAndIdempotent(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	prices := []Price{
		{Symbol: "AAPL", Date: "2026-11-20", Open: "123.45", High: "130.00", Low: "120.01", Close: "125.5", Volume: 1000},
		{Symbol: "MSFT", Date: "2026-11-20", Open: "0.01", High: "0.02", Low: "0.01", Close: "0.02", Volume: 0},
	}
	write := func() {
		t.Helper()
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			n, err := UpsertPrices(ctx, tx, 7, prices)
			if err == nil && n != 2 {
				t.Errorf("UpsertPrices wrote %d rows, want 2", n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write()
	write()
	rows, err := db.Pool.Query(ctx, `SELECT symbol, trade_date::text, open::text, high::text, low::text, close::text, volume
		FROM stock_prices ORDER BY symbol`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Price, error) {
		var p Price
		err := r.Scan(&p.Symbol, &p.Date, &p.Open, &p.High, &p.Low, &p.Close, &p.Volume)
		return p, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, prices) {
		t.Errorf("stored prices = %+v, want exactly %+v", got, prices)
	}
}

// Two transactions that write the same prices at once, given in opposite
// orders, both commit: UpsertPrices writes in the order of the keys, so
// they cannot deadlock on the rows (see the same test of etl.Upsert).
func TestUpsertPricesOfTheSameKeysDoNotDeadlock(t *testing.T) {
	db := testenv.Postgres(t)
	const n = 3000
	asc := make([]Price, n)
	for i := range asc {
		asc[i] = Price{Symbol: fmt.Sprintf("S%05d", i), Date: "2026-11-20", Open: "1", High: "2", Low: "1", Close: "2", Volume: int64(i)}
	}
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	write := func(prices []Price) func(ctx context.Context, tx pgx.Tx, round int) error {
		return func(ctx context.Context, tx pgx.Tx, round int) error {
			_, err := UpsertPrices(ctx, tx, int64(round), prices)
			return err
		}
	}
	testenv.WriteAtOnce(t, db.Pool, 10, write(asc), write(desc))
}
