package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// valueFlags are the values flags of apps install and upgrade, as Helm's:
// -f files merged in order, then each --set and --set-string.
type valueFlags struct {
	files      []string
	set        []string
	setString  []string
	stdinTaken bool
}

// merged returns the values the flags give, base (may be nil) under them,
// as YAML; "" when there are none.
func (v *valueFlags) merged(stdin io.Reader, base map[string]any) (string, error) {
	vals := map[string]any{}
	mergeValues(vals, base)
	for _, f := range v.files {
		var data []byte
		var err error
		if f == "-" {
			if v.stdinTaken {
				return "", errors.New("-f -: stdin can be read once")
			}
			v.stdinTaken = true
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return "", fmt.Errorf("values file: %w", err)
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(data, &m); err != nil {
			return "", fmt.Errorf("values file %s: %w", f, err)
		}
		mergeValues(vals, m)
	}
	for _, group := range []struct {
		flag    string
		args    []string
		strings bool
	}{{"--set", v.set, false}, {"--set-string", v.setString, true}} {
		for _, arg := range group.args {
			if err := setValues(vals, arg, group.strings); err != nil {
				return "", fmt.Errorf("%s %s: %w", group.flag, arg, err)
			}
		}
	}
	if len(vals) == 0 {
		return "", nil
	}
	out, err := yaml.Marshal(vals)
	return string(out), err
}

// mergeValues merges src into dst: maps key by key, anything else
// replaced.
func mergeValues(dst, src map[string]any) {
	for k, sv := range src {
		sm, sIsMap := sv.(map[string]any)
		dm, dIsMap := dst[k].(map[string]any)
		if sIsMap && dIsMap {
			mergeValues(dm, sm)
			continue
		}
		if sIsMap {
			c := map[string]any{}
			mergeValues(c, sm)
			sv = c
		}
		dst[k] = sv
	}
}

// setValues applies one --set argument: KEY=VALUE pairs separated by
// commas, KEY a dotted path (\. for a dot in a key), VALUE a scalar or a
// {A,B} list. Scalars are typed as Helm's --set types them unless
// asStrings: true, false, null and decimal integers not starting with 0.
func setValues(vals map[string]any, arg string, asStrings bool) error {
	pairs, err := splitOutside(arg, ',')
	if err != nil {
		return err
	}
	for _, pair := range pairs {
		key, raw, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return fmt.Errorf("%q: want KEY=VALUE", pair)
		}
		path, err := splitKey(key)
		if err != nil {
			return err
		}
		var val any
		if len(raw) >= 2 && raw[0] == '{' && raw[len(raw)-1] == '}' {
			items := []any{}
			if inner := raw[1 : len(raw)-1]; inner != "" {
				for _, it := range strings.Split(inner, ",") {
					items = append(items, typedValue(it, asStrings))
				}
			}
			val = items
		} else {
			val = typedValue(raw, asStrings)
		}
		m := vals
		for _, k := range path[:len(path)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[path[len(path)-1]] = val
	}
	return nil
}

// splitOutside splits s at sep outside {…}.
func splitOutside(s string, sep byte) ([]string, error) {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("%q: unmatched }", s)
			}
			depth--
		case sep:
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%q: unmatched {", s)
	}
	return append(out, s[start:]), nil
}

// splitKey splits a dotted key; \. is a dot inside a key.
func splitKey(key string) ([]string, error) {
	if strings.ContainsAny(key, "[]") {
		return nil, fmt.Errorf("key %q: list indexes are not supported; give the list with -f or as {A,B}", key)
	}
	var path []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		switch {
		case key[i] == '\\' && i+1 < len(key) && key[i+1] == '.':
			cur.WriteByte('.')
			i++
		case key[i] == '.':
			path = append(path, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(key[i])
		}
	}
	path = append(path, cur.String())
	for _, p := range path {
		if p == "" {
			return nil, fmt.Errorf("key %q: an empty part", key)
		}
	}
	return path, nil
}

// typedValue types a --set scalar.
func typedValue(s string, asString bool) any {
	if asString {
		return s
	}
	switch strings.ToLower(s) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	case "0":
		return int64(0)
	}
	if s != "" && s[0] != '0' {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}
