// Package docs checks the repository's Markdown: every relative link points
// at a file that exists, and every #anchor at a heading of the target file,
// with the anchors GitHub gives headings.
package docs

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
)

// markdown parses as GitHub does for what matters here: tables hold links
// too, and bare URLs are external.
var markdown = goldmark.New(goldmark.WithExtensions(extension.GFM))

// Slug is the anchor GitHub gives a heading's text (github-slugger): lower
// case, letters, digits, marks, '-' and '_' kept, each space a '-', every
// other character dropped.
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// plainText is a node's text as GitHub slugs it: code spans and link texts
// included, raw HTML left out.
func plainText(n ast.Node, src []byte) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch c := c.(type) {
		case *ast.RawHTML:
			return ast.WalkSkipChildren, nil
		case *ast.Text:
			b.Write(c.Segment.Value(src))
		case *ast.String:
			b.Write(c.Value)
		case *ast.AutoLink:
			b.Write(c.URL(src))
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

// htmlAnchor finds the anchors written as HTML: <a name="x"> or id="x".
var htmlAnchor = regexp.MustCompile(`<[a-zA-Z][^>]*\s(?:id|name)="([^"]+)"`)

// doc is one parsed Markdown file: its anchors and the link destinations
// it holds, with their line numbers.
type doc struct {
	anchors map[string]bool
	links   []link
}

type link struct {
	dest string
	line int
}

func parse(src []byte) doc {
	d := doc{anchors: map[string]bool{}}
	seen := map[string]int{}
	lineOf := func(n ast.Node) int {
		for c := n; c != nil; c = c.Parent() {
			if c.Type() == ast.TypeBlock && c.Lines().Len() > 0 {
				return 1 + strings.Count(string(src[:c.Lines().At(0).Start]), "\n")
			}
		}
		return 0
	}
	root := markdown.Parser().Parse(text.NewReader(src))
	_ = ast.Walk(root, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Heading:
			s := Slug(plainText(n, src))
			if k := seen[s]; k > 0 {
				d.anchors[fmt.Sprintf("%s-%d", s, k)] = true
			} else {
				d.anchors[s] = true
			}
			seen[s]++
		case *ast.Link:
			d.links = append(d.links, link{string(n.Destination), lineOf(n)})
		case *ast.Image:
			d.links = append(d.links, link{string(n.Destination), lineOf(n)})
		case *ast.HTMLBlock, *ast.RawHTML:
			var raw []byte
			if h, ok := n.(*ast.HTMLBlock); ok {
				for i := 0; i < h.Lines().Len(); i++ {
					seg := h.Lines().At(i)
					raw = append(raw, seg.Value(src)...)
				}
			} else {
				r := n.(*ast.RawHTML)
				for i := 0; i < r.Segments.Len(); i++ {
					seg := r.Segments.At(i)
					raw = append(raw, seg.Value(src)...)
				}
			}
			for _, m := range htmlAnchor.FindAllSubmatch(raw, -1) {
				d.anchors[string(m[1])] = true
			}
		}
		return ast.WalkContinue, nil
	})
	return d
}

var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// lineAnchor is GitHub's anchor of a line of a source file.
var lineAnchor = regexp.MustCompile(`^L\d+(-L\d+)?$`)

// check returns every broken relative link of the Markdown files under
// root, as "file:line: message".
func check(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := e.Name()
		if e.IsDir() && p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
			name == "bin" || name == "dist" || name == "node_modules" || strings.HasPrefix(name, "demo-")) {
			return filepath.SkipDir
		}
		if !e.IsDir() && strings.HasSuffix(name, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	docs := map[string]doc{}
	load := func(p string) (doc, error) {
		if d, ok := docs[p]; ok {
			return d, nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return doc{}, err
		}
		docs[p] = parse(src)
		return docs[p], nil
	}
	var broken []string
	for _, f := range files {
		d, err := load(f)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(root, f)
		for _, l := range d.links {
			if l.dest == "" || scheme.MatchString(l.dest) || strings.HasPrefix(l.dest, "//") {
				continue
			}
			p, frag, _ := strings.Cut(l.dest, "#")
			p, err := url.PathUnescape(p)
			if err != nil {
				broken = append(broken, fmt.Sprintf("%s:%d: %s: %v", rel, l.line, l.dest, err))
				continue
			}
			target := f
			switch {
			case p == "":
			case strings.HasPrefix(p, "/"):
				target = filepath.Join(root, filepath.FromSlash(p))
			default:
				target = filepath.Join(filepath.Dir(f), filepath.FromSlash(p))
			}
			if r, err := filepath.Rel(root, target); err != nil || strings.HasPrefix(r, "..") {
				broken = append(broken, fmt.Sprintf("%s:%d: %s leaves the repository", rel, l.line, l.dest))
				continue
			}
			st, err := os.Stat(target)
			if err != nil {
				broken = append(broken, fmt.Sprintf("%s:%d: %s: no such file", rel, l.line, l.dest))
				continue
			}
			if frag == "" || st.IsDir() {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				if !lineAnchor.MatchString(frag) {
					broken = append(broken, fmt.Sprintf("%s:%d: %s: #%s is not a line anchor of a non-Markdown file", rel, l.line, l.dest, frag))
				}
				continue
			}
			td, err := load(target)
			if err != nil {
				return nil, err
			}
			if uf, err := url.PathUnescape(frag); err != nil || !td.anchors[strings.ToLower(uf)] {
				broken = append(broken, fmt.Sprintf("%s:%d: %s: no heading with anchor #%s", rel, l.line, l.dest, frag))
			}
		}
	}
	slices.Sort(broken)
	return broken, nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

// TestRelativeLinks fails on any relative link or anchor of the
// repository's Markdown that leads nowhere.
func TestRelativeLinks(t *testing.T) {
	broken, err := check(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Error(b)
	}
}

// TestReadmeIsShort keeps the README a page a newcomer reads, with the
// rest in docs/.
func TestReadmeIsShort(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "\n"); n > 300 {
		t.Errorf("README.md has %d lines; keep it at most 300 and move the rest to docs/", n)
	}
}

func TestSlug(t *testing.T) {
	for h, want := range map[string]string{
		"Header-routed steps (dark launch and A/B)": "header-routed-steps-dark-launch-and-ab",
		"No new way in: the egress policy":          "no-new-way-in-the-egress-policy",
		"Install the CRDs and run the operator":     "install-the-crds-and-run-the-operator",
		"rollouts.modelrollout.io/v1alpha1":         "rolloutsmodelrolloutiov1alpha1",
		"snake_case and  two spaces":                "snake_case-and--two-spaces",
		"Überblick → Schritt 2":                     "überblick--schritt-2",
	} {
		if got := Slug(h); got != want {
			t.Errorf("Slug(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestCheckFindsBrokenLinks runs the checker on a small tree with a link of
// every kind, good and broken.
func TestCheckFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "# Top\n\n## Usage `make demo`\n\n## Usage `make demo`\n\n"+
		"[ok](#usage-make-demo) [ok](#usage-make-demo-1) [bad](#usage)\n\n"+
		"| a | b |\n|---|---|\n| [ok](docs/a.md#the-a) | [bad](docs/a.md#the-b) |\n\n"+
		"[ok](docs/) [ok](main.go#L3) [bad](main.go#main) [bad](docs/missing.md) [ok](https://example.com/x.md)\n\n"+
		"```md\n[not a link](nowhere.md)\n```\n\n`[not a link](nowhere.md)`\n\n[ok](/docs/a.md#anchor-in-html)\n")
	write("docs/a.md", "# The A\n\n<a name=\"anchor-in-html\"></a>\n\n[ok](../README.md#top) [bad](../../outside.md)\n")
	write("main.go", "package main\n")
	write(".hidden/x.md", "[ignored](nowhere.md)\n")
	got, err := check(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md:1: #usage: no heading with anchor #usage",
		"README.md:1: docs/a.md#the-b: no heading with anchor #the-b",
		"README.md:1: docs/missing.md: no such file",
		"README.md:1: main.go#main: #main is not a line anchor of a non-Markdown file",
		"docs/a.md:5: ../../outside.md leaves the repository",
	}
	// Line numbers are those of the paragraph or table a link is in.
	norm := func(s []string) []string {
		out := make([]string, len(s))
		for i, b := range s {
			file, rest, _ := strings.Cut(b, ":")
			_, rest, _ = strings.Cut(rest, ":")
			out[i] = file + ":" + rest
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(norm(got), norm(want)) {
		t.Errorf("broken links found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
