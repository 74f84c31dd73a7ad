package event

// splitArray returns the elements of the JSON array b (trimmed, starting
// with '['), as sub-slices of b, without decoding or validating them: the
// ingest path decodes each element in full and strictly afterwards
// (DecodeOne), so only the array's own structure is checked here —
// brackets, the commas between elements, nothing after the closing
// bracket. A valid element's extent is found exactly (strings and their
// escapes are skipped, brackets nested); an invalid one may be cut
// differently, but is then refused by DecodeOne whatever its cut. ok is
// false when the structure is wrong: the caller then lets encoding/json
// name the error.
//
// It replaces json.Unmarshal into []json.RawMessage, which validated and
// copied every element once more before each was decoded: ~4 CPU-µs of a
// 300-byte event (docs/performance.md, "Ingest CPU per event").
func splitArray(b []byte) (elems [][]byte, ok bool) {
	if len(b) == 0 || b[0] != '[' {
		return nil, false
	}
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return [][]byte{}, skipSpace(b, i+1) == len(b)
	}
	for {
		end, ok := valueEnd(b, i)
		if !ok {
			return nil, false
		}
		elems = append(elems, b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return elems, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// valueEnd returns the index after the JSON value starting at b[i].
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := stringEnd(b, i)
				if !ok {
					return 0, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return 0, false
	case '"':
		return stringEnd(b, i)
	case ',', ']', '}', ':':
		return 0, false
	default: // a number, true, false, null (or garbage: DecodeOne refuses it)
		j := i
		for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != ']' {
			j++
		}
		return j, true
	}
}

// stringEnd returns the index after the string starting at b[i] ('"').
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// plainString returns the text of the JSON string b when it has no escape
// and only printable ASCII (every category and severity name), without a
// decoder: Category and Severity called encoding/json for each event's
// field, ~1 CPU-µs of the ingest decode. Anything else: ok is false and
// the caller decodes b with encoding/json as before.
func plainString(b []byte) (s string, ok bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	for _, c := range b[1 : len(b)-1] {
		if c < 0x20 || c >= 0x80 || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(b[1 : len(b)-1]), true
}
