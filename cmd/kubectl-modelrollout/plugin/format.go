package plugin

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/duration"
)

// Style says how output is decorated. The zero value is plain text with the
// Unicode marks of the user story (✔ ▶ · ✖ …), which is what tests compare.
type Style struct {
	// Color adds ANSI colours; set when stdout is a terminal and neither
	// --no-color nor NO_COLOR is given.
	Color bool
	// ASCII replaces the Unicode marks with ASCII ones (--ascii).
	ASCII bool
}

// Marks used in the status view.
const (
	markDone    = "✔"
	markCurrent = "▶"
	markPending = "·"
	markFail    = "✖"
	markHold    = "…"
	markLE      = "≤"
	markGE      = "≥"
)

var asciiMarks = map[string]string{
	markDone:    "+",
	markCurrent: ">",
	markPending: "-",
	markFail:    "x",
	markHold:    "?",
	markLE:      "<=",
	markGE:      ">=",
}

func (s Style) mark(m string) string {
	if s.ASCII {
		return asciiMarks[m]
	}
	return m
}

// ANSI colours.
const (
	colorNone   = ""
	colorRed    = "31"
	colorGreen  = "32"
	colorYellow = "33"
	colorCyan   = "36"
	colorBold   = "1"
	colorDim    = "2"
)

func (s Style) paint(color, text string) string {
	if !s.Color || color == colorNone || text == "" {
		return text
	}
	return "\x1b[" + color + "m" + text + "\x1b[0m"
}

// phaseColor is the colour of a phase name.
func phaseColor(phase string) string {
	switch phase {
	case "Succeeded":
		return colorGreen
	case "RolledBack":
		return colorRed
	case "Paused", "Waiting":
		return colorYellow
	case "Progressing":
		return colorCyan
	}
	return colorNone
}

// visibleWidth is the number of runes of s without ANSI escapes.
func visibleWidth(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == 0x1b {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				break
			}
			i += j + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}

// padRight pads s with spaces to the visible width w.
func padRight(s string, w int) string {
	if n := visibleWidth(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

// columns aligns rows of cells (which may hold ANSI colour) into lines,
// separated by gap spaces. Trailing spaces are trimmed.
func columns(rows [][]string, gap int) []string {
	widths := map[int]int{}
	for _, r := range rows {
		for i, c := range r {
			if w := visibleWidth(c); w > widths[i] {
				widths[i] = w
			}
		}
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(padRight(c, widths[i]+gap))
		}
		lines = append(lines, strings.TrimRight(b.String(), " "))
	}
	return lines
}

// age renders how long ago t was, the way kubectl renders AGE.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// short renders a span compactly: 45s, 4m30s, 18m, 1h, 1h30m, 2d3h.
func short(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	// Round to the last unit shown: 17m59.6s is "18m".
	switch {
	case d >= 24*time.Hour:
		d = d.Round(time.Hour)
	case d >= 10*time.Minute:
		d = d.Round(time.Minute)
	default:
		d = d.Round(time.Second)
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		m, s := int(d/time.Minute), int((d%time.Minute)/time.Second)
		if s == 0 || m >= 10 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int((d%time.Hour)/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		days, h := int(d/(24*time.Hour)), int((d%(24*time.Hour))/time.Hour)
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}

// wrapItems joins items with sep and wraps lines at width, indenting
// continuation lines with indent.
func wrapItems(items []string, sep string, width int, indent string) []string {
	var lines []string
	cur := ""
	for _, it := range items {
		switch {
		case cur == "":
			cur = it
		case visibleWidth(indent)+visibleWidth(cur)+len(sep)+visibleWidth(it) > width:
			lines = append(lines, cur)
			cur = it
		default:
			cur += sep + it
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
