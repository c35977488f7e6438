package plugin

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// table is how `get` prints rollouts as rows: the default table, -o wide and
// -o custom-columns.
type table struct {
	header []string
	row    func(ro *rolloutsv1.ModelRollout, now time.Time) []string
	// age is the index of the AGE column, -1 when there is none. Under
	// --watch a row is printed again only when a column other than AGE
	// changed, since AGE moves by itself.
	age       int
	noHeaders bool
}

// key is what must change for a row to be printed again under --watch.
func (t *table) key(row []string) string {
	if t.age < 0 || t.age >= len(row) {
		return fmt.Sprint(row)
	}
	return fmt.Sprint(append(append([]string{}, row[:t.age]...), row[t.age+1:]...))
}

// wideColumns are the columns -o wide adds, the CRD's priority-1 printer
// columns.
var wideColumns = []string{"STABLE", "MESSAGE"}

// defaultTable is the table of `kubectl get modelrollouts`, with a
// NAMESPACE column first for -A and the CRD's wide columns for -o wide.
func defaultTable(allNamespaces, wide bool) *table {
	header := append([]string{}, tableHeader...)
	if wide {
		header = append(header, wideColumns...)
	}
	age := len(tableHeader) - 1
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
		age++
	}
	return &table{header: header, age: age, row: func(ro *rolloutsv1.ModelRollout, now time.Time) []string {
		row := tableRow(ro, now, allNamespaces)
		if wide {
			row = append(row, orNone(ro.Spec.Stable.Name), orNone(ro.Status.Message))
		}
		return row
	}}
}

// relaxedJSONPath accepts what kubectl's custom-columns accept: `.a.b`,
// `a.b` and `{.a.b}`.
var relaxedJSONPath = regexp.MustCompile(`^\{?(\.?[^{}]+)\}?$`)

// customColumnsTable parses -o custom-columns=HEADER:.json.path,... the way
// kubectl does, with client-go's JSONPath. Missing values print <none>.
func customColumnsTable(spec string) (*table, error) {
	if spec == "" {
		return nil, usageErrorf("custom-columns format specified but no custom columns given, e.g. -o custom-columns=NAME:.metadata.name,PHASE:.status.phase")
	}
	var header []string
	var paths []*jsonpath.JSONPath
	for _, col := range strings.Split(spec, ",") {
		name, expr, ok := strings.Cut(col, ":")
		if !ok || name == "" {
			return nil, usageErrorf("unexpected custom-columns spec %q, expected <header>:<json-path-expr>", col)
		}
		m := relaxedJSONPath.FindStringSubmatch(expr)
		if m == nil {
			return nil, usageErrorf("custom-columns %s: unexpected path string %q, expected a JSONPath such as .status.phase or {.status.phase}", name, expr)
		}
		path := m[1]
		if !strings.HasPrefix(path, ".") {
			path = "." + path
		}
		jp := jsonpath.New(name).AllowMissingKeys(true)
		if err := jp.Parse("{" + path + "}"); err != nil {
			return nil, usageErrorf("custom-columns %s: %v", name, err)
		}
		header = append(header, name)
		paths = append(paths, jp)
	}
	return &table{header: header, age: -1, row: func(ro *rolloutsv1.ModelRollout, _ time.Time) []string {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(typed(ro))
		row := make([]string, len(paths))
		for i, jp := range paths {
			row[i] = "<none>"
			if err != nil {
				continue
			}
			results, err := jp.FindResults(obj)
			if err != nil {
				continue
			}
			var vals []string
			for _, rs := range results {
				for _, v := range rs {
					vals = append(vals, fmt.Sprintf("%v", v.Interface()))
				}
			}
			if len(vals) > 0 {
				row[i] = strings.Join(vals, ",")
			}
		}
		return row
	}}, nil
}

// outputFormats are the values of -o, for help and completion.
func outputFormats(pf *genericclioptions.PrintFlags) []string {
	return append([]string{"wide", "custom-columns"}, pf.AllowedFormats()...)
}

// resolveOutput turns -o into either a table or one of cli-runtime's
// object printers (json, yaml, name, jsonpath, go-template, ...).
func resolveOutput(o GetOptions) (*table, printers.ResourcePrinter, error) {
	switch {
	case o.Output == "" && (o.PrintFlags == nil || o.PrintFlags.TemplatePrinterFlags == nil || str(o.PrintFlags.TemplatePrinterFlags.TemplateArgument) == ""),
		o.Output == "wide":
		t := defaultTable(o.AllNamespaces, o.Output == "wide")
		t.noHeaders = o.NoHeaders
		return t, nil, nil
	case strings.HasPrefix(o.Output, "custom-columns="), o.Output == "custom-columns":
		t, err := customColumnsTable(strings.TrimPrefix(strings.TrimPrefix(o.Output, "custom-columns"), "="))
		if err != nil {
			return nil, nil, err
		}
		t.noHeaders = o.NoHeaders
		return t, nil, nil
	}
	pf := o.PrintFlags
	if pf == nil {
		pf = newPrintFlags()
	}
	output := o.Output
	pf.OutputFormat = &output
	p, err := pf.ToPrinter()
	if genericclioptions.IsNoCompatiblePrinterError(err) {
		return nil, nil, usageErrorf("unable to match a printer suitable for the output format %q, allowed formats are: %s",
			o.Output, strings.Join(outputFormats(pf), ","))
	}
	if err != nil {
		return nil, nil, usageErrorf("-o %s: %v", o.Output, err)
	}
	return nil, p, nil
}

func newPrintFlags() *genericclioptions.PrintFlags {
	return genericclioptions.NewPrintFlags("").WithTypeSetter(Scheme)
}

// typed returns a copy of a rollout with its apiVersion and kind set, as
// printers and JSONPath expect them.
func typed(ro *rolloutsv1.ModelRollout) *rolloutsv1.ModelRollout {
	out := ro.DeepCopy()
	out.SetGroupVersionKind(rolloutsv1.GroupVersion.WithKind("ModelRollout"))
	return out
}

// asList wraps rollouts in a v1 List, which is what kubectl prints for a
// list of objects in json, yaml, name or jsonpath.
func asList(ros []rolloutsv1.ModelRollout, resourceVersion string) *corev1.List {
	list := &corev1.List{Items: make([]runtime.RawExtension, 0, len(ros))}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("List"))
	list.ResourceVersion = resourceVersion
	for i := range ros {
		list.Items = append(list.Items, runtime.RawExtension{Object: typed(&ros[i])})
	}
	return list
}
