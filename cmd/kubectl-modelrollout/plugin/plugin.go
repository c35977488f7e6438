// Package plugin implements kubectl-modelrollout, the kubectl plugin that
// shows and steers ModelRollouts. It writes annotations only, never spec,
// so it does not fight a GitOps tool (Argo CD, Flux) that owns the spec.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Plugin runs the verbs against one cluster. Everything it needs from the
// outside is here, so tests drive it with a fake client and a fixed clock.
type Plugin struct {
	Client Client
	// Namespace is where named rollouts are looked up.
	Namespace string
	// Out receives results; ErrOut warnings and notes.
	Out, ErrOut io.Writer
	// Now is the clock for relative times and tokens.
	Now   func() time.Time
	Style Style
	// TTY is true when Out is a terminal: --watch then redraws in place and
	// refreshes countdowns.
	TTY bool
	// Host is the API server's URL, for error messages.
	Host string
	// User is the kubeconfig user, a fallback for who aborts.
	User string
	// As is the user of --as, when set: who the API server sees.
	As string
	// Impersonating describes --as and --as-group when they are set.
	Impersonating string
	// RequestTimeout is --request-timeout when set.
	RequestTimeout string
}

func (p *Plugin) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

func (p *Plugin) errOut() io.Writer {
	if p.ErrOut == nil {
		return io.Discard
	}
	return p.ErrOut
}

// get reads one rollout from the plugin's namespace.
func (p *Plugin) get(ctx context.Context, name string) (*rolloutsv1.ModelRollout, error) {
	ro := &rolloutsv1.ModelRollout{}
	if err := p.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, ro); err != nil {
		return nil, p.apiError(err, p.Namespace, name)
	}
	return ro, nil
}

// GetOptions are the options of `get`.
type GetOptions struct {
	// Name selects one rollout; empty lists all.
	Name          string
	AllNamespaces bool
	Watch         bool
	// Output is -o: empty for the table, wide, custom-columns=..., or a
	// format of cli-runtime's printers (json, yaml, name, jsonpath=...,
	// go-template=...).
	Output string
	// NoHeaders leaves out the header of the table formats.
	NoHeaders bool
	// PrintFlags holds the printer flags (--template,
	// --show-managed-fields, ...); defaults when nil.
	PrintFlags *genericclioptions.PrintFlags
}

// Get prints rollouts as a table, like `kubectl get modelrollouts`, or in
// the -o format. With Watch it then prints a rollout again whenever it
// changes, until ctx is done.
func (p *Plugin) Get(ctx context.Context, o GetOptions) error {
	if o.Name != "" && o.AllNamespaces {
		return usageErrorf("a name cannot be combined with --all-namespaces")
	}
	tbl, printer, err := resolveOutput(o)
	if err != nil {
		return err
	}
	var ros []rolloutsv1.ModelRollout
	rv := ""
	if o.Name != "" {
		ro, err := p.get(ctx, o.Name)
		if err != nil {
			return err
		}
		ros = []rolloutsv1.ModelRollout{*ro}
		rv = ro.ResourceVersion
	} else {
		list := &rolloutsv1.ModelRolloutList{}
		if err := p.Client.List(ctx, list, p.listOpts(o.AllNamespaces, "")); err != nil {
			return p.apiError(err, p.Namespace, "")
		}
		ros = list.Items
		rv = list.ResourceVersion
	}
	if printer != nil {
		return p.printObjects(ctx, o, printer, ros, rv)
	}
	now := p.now()
	tp := &tablePrinter{w: p.Out}
	printed := map[types.UID]string{}
	headerDone := o.NoHeaders || tbl.noHeaders
	printRow := func(ro *rolloutsv1.ModelRollout) error {
		row := tbl.row(ro, p.now())
		key := tbl.key(row)
		if printed[ro.UID] == key {
			return nil
		}
		printed[ro.UID] = key
		if !headerDone {
			headerDone = true
			if err := tp.print(tbl.header); err != nil {
				return err
			}
		}
		return tp.print(row)
	}
	if len(ros) == 0 {
		where := fmt.Sprintf("%s namespace", p.Namespace)
		if o.AllNamespaces {
			where = "any namespace"
		}
		fmt.Fprintf(p.errOut(), "No modelrollouts found in %s.\n", where)
	} else {
		var rows [][]string
		if !headerDone {
			rows = append(rows, tbl.header)
		}
		for i := range ros {
			row := tbl.row(&ros[i], now)
			rows = append(rows, row)
			printed[ros[i].UID] = tbl.key(row)
		}
		headerDone = true
		if err := tp.print(rows...); err != nil {
			return err
		}
	}
	if !o.Watch {
		return nil
	}
	return p.watchRollouts(ctx, o.AllNamespaces, o.Name, rv, func(t watch.EventType, ro *rolloutsv1.ModelRollout) error {
		return printRow(ro)
	})
}

// printObjects prints rollouts with one of cli-runtime's printers: one
// object for a name, else a v1 List, as kubectl does; under --watch then
// every changed rollout on its own.
func (p *Plugin) printObjects(ctx context.Context, o GetOptions, printer printers.ResourcePrinter, ros []rolloutsv1.ModelRollout, rv string) error {
	var err error
	switch {
	case o.Name != "":
		err = printer.PrintObj(typed(&ros[0]), p.Out)
	case o.Output == "name":
		// The name printer takes objects one by one.
		for i := 0; i < len(ros) && err == nil; i++ {
			err = printer.PrintObj(typed(&ros[i]), p.Out)
		}
	default:
		err = printer.PrintObj(asList(ros, rv), p.Out)
	}
	if err != nil {
		return failf("print: %v", err)
	}
	if !o.Watch {
		return nil
	}
	return p.watchRollouts(ctx, o.AllNamespaces, o.Name, rv, func(t watch.EventType, ro *rolloutsv1.ModelRollout) error {
		if err := printer.PrintObj(typed(ro), p.Out); err != nil {
			return failf("print: %v", err)
		}
		return nil
	})
}

func (p *Plugin) listOpts(allNamespaces bool, name string) ListOptions {
	var opts ListOptions
	if !allNamespaces {
		opts.Namespace = p.Namespace
	}
	if name != "" {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", name)
	}
	return opts
}

// watchRollouts calls fn for every change of the selected rollouts from
// resourceVersion rv on, until ctx is done (which returns nil). A watch the
// server closes is resumed, and relisted when its version has expired.
func (p *Plugin) watchRollouts(ctx context.Context, allNamespaces bool, name, rv string, fn func(watch.EventType, *rolloutsv1.ModelRollout) error) error {
	for {
		opts := p.listOpts(allNamespaces, name)
		opts.ResourceVersion, opts.AllowWatchBookmarks = rv, true
		w, err := p.Client.Watch(ctx, &rolloutsv1.ModelRolloutList{}, opts)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return p.apiError(err, p.Namespace, "")
		}
		started := time.Now()
		expired, err := p.drain(ctx, w, &rv, fn)
		w.Stop()
		if err != nil || ctx.Err() != nil {
			return err
		}
		if time.Since(started) < time.Second {
			// A watch that ends at once (a proxy cutting it, say) is not
			// retried in a tight loop.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		if expired {
			// The version is too old to resume from: list again and
			// report the objects as they are now.
			list := &rolloutsv1.ModelRolloutList{}
			if err := p.Client.List(ctx, list, p.listOpts(allNamespaces, name)); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return p.apiError(err, p.Namespace, "")
			}
			for i := range list.Items {
				if err := fn(watch.Modified, &list.Items[i]); err != nil {
					return err
				}
			}
			rv = list.ResourceVersion
		}
	}
}

// drain reads one watch until it ends. It returns expired when the server
// said the resource version is gone.
func (p *Plugin) drain(ctx context.Context, w watch.Interface, rv *string, fn func(watch.EventType, *rolloutsv1.ModelRollout) error) (expired bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					return true, nil
				}
				return false, p.apiError(err, p.Namespace, "")
			case watch.Bookmark:
				if ro, ok := ev.Object.(*rolloutsv1.ModelRollout); ok {
					*rv = ro.ResourceVersion
				}
			case watch.Added, watch.Modified, watch.Deleted:
				ro, ok := ev.Object.(*rolloutsv1.ModelRollout)
				if !ok {
					continue
				}
				*rv = ro.ResourceVersion
				if err := fn(ev.Type, ro); err != nil {
					return false, err
				}
			}
		}
	}
}

// Events returns the events about a rollout: events.k8s.io/v1 Events whose
// regarding object is the rollout, or core v1 Events when that API cannot be
// read.
func (p *Plugin) Events(ctx context.Context, ro *rolloutsv1.ModelRollout) ([]Event, error) {
	matches := func(ref corev1.ObjectReference) bool {
		return ref.Name == ro.Name && (ref.Kind == "" || ref.Kind == "ModelRollout") && (ref.UID == "" || ref.UID == ro.UID)
	}
	evs := &eventsv1.EventList{}
	err := p.listEvents(ctx, evs, ro, "regarding.name")
	if err == nil {
		var out []Event
		for _, e := range evs.Items {
			if matches(e.Regarding) {
				out = append(out, fromEventsV1(&e))
			}
		}
		return out, nil
	}
	core := &corev1.EventList{}
	if err := p.listEvents(ctx, core, ro, "involvedObject.name"); err != nil {
		return nil, err
	}
	var out []Event
	for _, e := range core.Items {
		if matches(e.InvolvedObject) {
			out = append(out, fromCoreV1(&e))
		}
	}
	return out, nil
}

// listEvents lists the events of the rollout's namespace, selected by the
// object's name on the server when it supports that field.
func (p *Plugin) listEvents(ctx context.Context, list ObjectList, ro *rolloutsv1.ModelRollout, nameField string) error {
	err := p.Client.List(ctx, list, ListOptions{Namespace: ro.Namespace, FieldSelector: fields.OneTermEqualSelector(nameField, ro.Name)})
	if apierrors.IsBadRequest(err) {
		err = p.Client.List(ctx, list, ListOptions{Namespace: ro.Namespace})
	}
	return err
}

func fromEventsV1(e *eventsv1.Event) Event {
	ev := Event{Type: e.Type, Reason: e.Reason, Note: e.Note, Count: 1}
	switch {
	case e.Series != nil:
		ev.Time = e.Series.LastObservedTime.Time
		ev.Count = e.Series.Count
	case !e.EventTime.IsZero():
		ev.Time = e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		ev.Time = e.DeprecatedLastTimestamp.Time
		ev.Count = e.DeprecatedCount
	default:
		ev.Time = e.CreationTimestamp.Time
	}
	if ev.Count < 1 {
		ev.Count = 1
	}
	return ev
}

func fromCoreV1(e *corev1.Event) Event {
	ev := Event{Type: e.Type, Reason: e.Reason, Note: e.Message, Count: e.Count}
	switch {
	case e.Series != nil:
		ev.Time = e.Series.LastObservedTime.Time
		ev.Count = e.Series.Count
	case !e.LastTimestamp.IsZero():
		ev.Time = e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		ev.Time = e.EventTime.Time
	default:
		ev.Time = e.CreationTimestamp.Time
	}
	if ev.Count < 1 {
		ev.Count = 1
	}
	return ev
}

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// refreshEvery is how often `status --watch` redraws a terminal to keep
// countdowns current when nothing changes.
const refreshEvery = 5 * time.Second

// Status prints the detailed view of one rollout. With watch it redraws the
// view on every change of the rollout or its events, until ctx is done.
func (p *Plugin) Status(ctx context.Context, name string, watchChanges bool) error {
	ro, err := p.get(ctx, name)
	if err != nil {
		return err
	}
	events, err := p.Events(ctx, ro)
	if err != nil {
		fmt.Fprintf(p.errOut(), "warning: cannot read the events of %s: %v\n", name, err)
	}
	if !watchChanges {
		return RenderStatus(p.Out, ro, events, p.now(), p.Style)
	}
	return p.watchStatus(ctx, ro, events)
}

func (p *Plugin) watchStatus(ctx context.Context, ro *rolloutsv1.ModelRollout, events []Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := true
	render := func() error {
		if p.TTY {
			if _, err := io.WriteString(p.Out, clearScreen); err != nil {
				return err
			}
		} else if !first {
			if _, err := fmt.Fprintf(p.Out, "\n--- %s\n", p.now().UTC().Format(time.RFC3339)); err != nil {
				return err
			}
		}
		first = false
		return RenderStatus(p.Out, ro, events, p.now(), p.Style)
	}
	if err := render(); err != nil {
		return err
	}

	type change struct {
		ro      *rolloutsv1.ModelRollout
		deleted bool
	}
	changes := make(chan change)
	eventsChanged := make(chan struct{}, 1)
	errs := make(chan error, 1)
	go func() {
		errs <- p.watchRollouts(ctx, false, ro.Name, ro.ResourceVersion, func(t watch.EventType, obj *rolloutsv1.ModelRollout) error {
			select {
			case changes <- change{ro: obj, deleted: t == watch.Deleted}:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	go p.watchEvents(ctx, ro, eventsChanged)

	var tick <-chan time.Time
	if p.TTY {
		t := time.NewTicker(refreshEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case c := <-changes:
			if c.deleted {
				fmt.Fprintf(p.Out, "\nmodelrollout %q was deleted from namespace %q\n", c.ro.Name, c.ro.Namespace)
				continue
			}
			if c.ro.ResourceVersion == ro.ResourceVersion {
				continue
			}
			ro = c.ro
			if evs, err := p.Events(ctx, ro); err == nil {
				events = evs
			}
			if err := render(); err != nil {
				return err
			}
		case <-eventsChanged:
			evs, err := p.Events(ctx, ro)
			if err != nil {
				continue
			}
			events = evs
			if err := render(); err != nil {
				return err
			}
		case <-tick:
			if err := render(); err != nil {
				return err
			}
		}
	}
}

// watchEvents signals changed when an event about the rollout is recorded.
// It gives up quietly when events cannot be watched: the view then follows
// the rollout alone.
func (p *Plugin) watchEvents(ctx context.Context, ro *rolloutsv1.ModelRollout, changed chan<- struct{}) {
	sel := fields.OneTermEqualSelector("regarding.name", ro.Name)
	list := &eventsv1.EventList{}
	if err := p.Client.List(ctx, list, ListOptions{Namespace: ro.Namespace, FieldSelector: sel, Limit: 1}); err != nil {
		return
	}
	rv := list.ResourceVersion
	for ctx.Err() == nil {
		w, err := p.Client.Watch(ctx, &eventsv1.EventList{}, ListOptions{Namespace: ro.Namespace, FieldSelector: sel, ResourceVersion: rv})
		if err != nil {
			return
		}
		for open := true; open; {
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					open = false
					break
				}
				e, isEvent := ev.Object.(*eventsv1.Event)
				if !isEvent {
					if ev.Type == watch.Error {
						// Expired: resume from now on.
						rv = ""
						open = false
					}
					break
				}
				rv = e.ResourceVersion
				if ev.Type == watch.Bookmark {
					break
				}
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}
		w.Stop()
	}
}

// actor is who acts, for the default abort reason: the authenticated user
// as the API server sees it, else the kubeconfig user, else the plugin.
func (p *Plugin) actor(ctx context.Context) string {
	who, _ := p.whoAmI(ctx)
	return who
}

// whoAmI asks the API server who the plugin acts as, with a
// SelfSubjectReview. When the review is refused or fails, it falls back to
// the --as user, else the kubeconfig user, else "kubectl-modelrollout", and
// fallback says why and which name it took.
func (p *Plugin) whoAmI(ctx context.Context) (who, fallback string) {
	ssr := &authenticationv1.SelfSubjectReview{}
	err := p.Client.Create(ctx, ssr)
	if err == nil && ssr.Status.UserInfo.Username != "" {
		return ssr.Status.UserInfo.Username, ""
	}
	why := "it returned no user name"
	if err != nil {
		why = statusMessage(err)
	}
	switch {
	case p.As != "":
		who, fallback = p.As, fmt.Sprintf("the --as user %q", p.As)
	case p.User != "":
		who, fallback = p.User, fmt.Sprintf("the kubeconfig user name %q", p.User)
	default:
		who, fallback = "kubectl-modelrollout", `"kubectl-modelrollout" (no kubeconfig user name either)`
	}
	return who, fmt.Sprintf("the API server did not say who you are (SelfSubjectReview: %s); recording %s instead", why, fallback)
}

// isCanceled is true for errors caused by the command being interrupted.
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled)
}
