package tiered

import (
	"unicode"
	"unicode/utf8"
)

// checkID returns nil for a valid session id: 1 to MaxIDBytes bytes of
// UTF-8 without whitespace or control characters.
func checkID(id string) error {
	if id == "" {
		return errIDEmpty
	}
	if len(id) > MaxIDBytes {
		return errIDLong
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= utf8.RuneSelf {
			return checkIDRunes(id[i:])
		}
		if c <= ' ' || c == 0x7f {
			return errIDChars
		}
	}
	return nil
}

func checkIDRunes(s string) error {
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) || !unicode.IsPrint(r) {
			return errIDChars
		}
	}
	return nil
}
