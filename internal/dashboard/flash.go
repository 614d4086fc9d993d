package dashboard

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// flash is a message for the next page a browser loads: the outcome of an
// action, carried across its redirect in a short-lived cookie, so that a
// reload does not show it again and a link cannot forge it.
type flash struct {
	// Kind is flashOK, flashWarn or flashError.
	Kind    string
	Message string
}

// The kinds of flash message, which are also their CSS classes.
const (
	flashOK    = "ok"
	flashWarn  = "warn"
	flashError = "error"
)

const (
	// flashCookie names the cookie.
	flashCookie = "syncworker_flash"
	// maxFlash bounds a message, to keep the cookie well within browsers'
	// limits; an error that long is cut.
	maxFlash = 1500
)

// setFlash sets f for the next page.
func setFlash(w http.ResponseWriter, f flash) {
	msg := f.Message
	if len(msg) > maxFlash {
		msg = strings.ToValidUTF8(msg[:maxFlash], "") + "…"
	}
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(f.Kind + "\n" + msg)),
		Path: "/", MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// takeFlash returns the flash message r carries, if any, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return nil
	}
	kind, msg, ok := strings.Cut(string(raw), "\n")
	if !ok || (kind != flashOK && kind != flashWarn && kind != flashError) {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}
