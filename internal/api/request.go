package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/syncworker/syncworker/internal/checkpoint"
)

// maxBody bounds a request body: the largest one the API takes is a job's
// parameters.
const maxBody = 1 << 20

// decodeBody decodes the JSON body of r into v, strictly: an unknown field,
// a value of the wrong type or anything after the object is a 400, a body
// over maxBody a 413. An empty body leaves v as it is. It answers the
// request itself when it returns false.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return true // no body: every field is optional
	}
	if err == nil {
		// One JSON value and nothing after it, but white space.
		if err = dec.Decode(&json.RawMessage{}); errors.Is(err, io.EOF) {
			return true
		}
		if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", tooLarge.Limit))
		return false
	}
	writeError(w, http.StatusBadRequest, bodyError(err, v))
	return false
}

// bodyError says what is wrong with a body that did not decode into v, in
// the API's words rather than Go's.
func bodyError(err error, v any) string {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return fmt.Sprintf("body: want a JSON object, got %s", typeErr.Value)
	case errors.As(err, &typeErr) && isMap(v, typeErr.Field) && typeErr.Type.Kind() != reflect.Map:
		// A bad value in an object such as params: encoding/json names the
		// object, not the key.
		return fmt.Sprintf("body: %s: every value must be %s, got %s", typeErr.Field, kind(typeErr.Type), typeErr.Value)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("body: %s: want %s, got %s", typeErr.Field, kind(typeErr.Type), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no type for this error, only its text.
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Sprintf("body: unknown field %s; the fields are %s", field, strings.Join(fields(v), ", "))
	default:
		return "body: not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
	}
}

// kind names what a value of t is written as in JSON.
func kind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return t.String()
	}
}

// fields returns the JSON names of the fields of the struct v points to.
func fields(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var names []string
	for i := range t.NumField() {
		names = append(names, jsonName(t.Field(i)))
	}
	return names
}

// isMap reports whether the field of the struct v points to named name in
// JSON is a map.
func isMap(v any, name string) bool {
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		if jsonName(t.Field(i)) == name {
			return t.Field(i).Type.Kind() == reflect.Map
		}
	}
	return false
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// runFilter reads the query of GET /api/runs: job, status and limit, each
// at most once. Anything else is refused rather than ignored, so that a
// misspelt filter does not list every run.
func runFilter(q url.Values) (checkpoint.RunFilter, error) {
	var f checkpoint.RunFilter
	var errs []string
	for _, key := range slices.Sorted(maps.Keys(q)) {
		if len(q[key]) > 1 {
			errs = append(errs, fmt.Sprintf("%s: given %d times, want it once", key, len(q[key])))
			continue
		}
		v := q.Get(key)
		switch key {
		case "job":
			f.Job = v
		case "status":
			f.Status = checkpoint.Status(v)
			if v != "" && !slices.Contains(checkpoint.Statuses(), f.Status) {
				errs = append(errs, fmt.Sprintf("status: unknown status %q; want one of %s", v, statusList()))
			}
		case "limit":
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > checkpoint.MaxListLimit {
				errs = append(errs, fmt.Sprintf("limit: want a whole number from 1 to %d, got %q", checkpoint.MaxListLimit, v))
			}
			f.Limit = n
		default:
			errs = append(errs, fmt.Sprintf("unknown query parameter %q; the filters are job, status and limit", key))
		}
	}
	if len(errs) > 0 {
		return checkpoint.RunFilter{}, errors.New(strings.Join(errs, "; "))
	}
	return f, nil
}

// statusList is the states of a run, for messages.
func statusList() string {
	var names []string
	for _, st := range checkpoint.Statuses() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}
