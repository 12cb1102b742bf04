// Package ctl is `couponmesh ctl`: the command line over a node's admin API
// (transport/admin), for operators and scripts (--json).
package ctl

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/admin"
)

const usage = `usage: couponmesh ctl [--admin HOST:PORT] [--json] COMMAND (flags may follow the command)
  members            the members this node knows: name, addresses, status, actors, sessions, messages/s
  drain NODE [--wait] drain NODE (name or member ID): sessions move to the other nodes, actors
                     passivate, the node leaves the cluster and exits; --wait until it is gone
  actors ls [--kind K] [--limit N] [--after kind/id] [--node NODE]
                     the activations on the node asked (or NODE), sorted by identity, one page
  actors get kind/id where the actor lives (asked on any node), its state, journal seq, mailbox
                     and the last messages it handled; never activates it
  actors passivate kind/id   stop the actor (it answers its mailbox first); the next request reactivates it
  actors probe kind/id       send it a ping through the cluster (activates it) and print the round trip
  sessions [--limit N] [--after ID] [--node NODE]
                     the WebSocket sessions on the node: user, subscriptions, send queue
  reminders          each reminder shard (durable timers): its node, reminders held, wake-ups in
                     flight and next due time
The admin token, when the node requires one, comes from COUPONMESH_ADMIN_TOKEN.`

// Run runs `couponmesh ctl args...`, printing to stdout. The admin address
// defaults to COUPONMESH_ADMIN_ADDR (else 127.0.0.1:8081); the token is
// COUPONMESH_ADMIN_TOKEN.
func Run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	addr := fs.String("admin", envOr("COUPONMESH_ADMIN_ADDR", "127.0.0.1:8081"), "admin address of any node")
	asJSON := fs.Bool("json", false, "print JSON (for scripts)")
	wait := fs.Bool("wait", false, "drain: wait until the node has left the cluster")
	kind := fs.String("kind", "", "actors ls: only this kind (coupon, user)")
	limit := fs.Int("limit", 50, "actors ls, sessions: page size")
	after := fs.String("after", "", "actors ls: start after this identity (kind/id); sessions: after this session ID")
	nodeName := fs.String("node", "", "actors ls, sessions: that member (name or ID) instead of the one asked")
	fs.Usage = func() { fmt.Fprintln(fs.Output(), usage) }
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		//lint:ignore ST1005 a usage text, printed whole
		return errors.New(usage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch rest[0] {
	case "members":
		var res struct {
			Members []admin.MemberInfo `json:"members"`
		}
		if err := call(ctx, *addr, http.MethodGet, "/admin/api/members", nil, &res); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		printMembers(stdout, res.Members)
		return nil
	case "drain":
		if len(rest) != 2 {
			return errors.New("usage: couponmesh ctl drain NODE [--wait]")
		}
		node := rest[1]
		var res map[string]any
		if err := call(ctx, *addr, http.MethodPost, "/admin/api/drain", admin.DrainRequest{Node: node}, &res); err != nil {
			return err
		}
		if *asJSON {
			if err := printJSON(stdout, res); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "draining %v (%v)\n", res["node"], res["id"])
		}
		if *wait {
			return waitGone(ctx, *addr, fmt.Sprint(res["id"]), stdout)
		}
		return nil
	case "actors":
		return ctlActors(ctx, stdout, *addr, *asJSON, rest[1:], *kind, *after, *nodeName, *limit)
	case "sessions":
		if len(rest) != 1 {
			return errors.New("usage: couponmesh ctl sessions [--limit N] [--after ID] [--node NODE]")
		}
		q := url.Values{"limit": {fmt.Sprint(*limit)}, "after": {*after}, "node": {*nodeName}}
		var res struct {
			Node     string                   `json:"node"`
			Total    int                      `json:"total"`
			Sessions []couponmesh.SessionInfo `json:"sessions"`
			Next     string                   `json:"next"`
		}
		if err := call(ctx, *addr, http.MethodGet, "/admin/api/sessions?"+q.Encode(), nil, &res); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER\tSUBSCRIPTIONS\tQUEUE\tSINCE")
		for _, s := range res.Sessions {
			user := s.User
			if user == "" {
				user = "(not authenticated)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\n", s.ID, user, s.Subscriptions, s.Queue, s.Since.Format(time.RFC3339))
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "%d of %d sessions on %s", len(res.Sessions), res.Total, res.Node)
		if res.Next != "" {
			fmt.Fprintf(stdout, "; next page: --after %s", res.Next)
		}
		fmt.Fprintln(stdout)
		return nil
	case "reminders":
		if len(rest) != 1 {
			return errors.New("usage: couponmesh ctl reminders")
		}
		var res admin.RemindersInfo
		if err := call(ctx, *addr, http.MethodGet, "/admin/api/reminders", nil, &res); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		printReminders(stdout, res)
		return nil
	default:
		return fmt.Errorf("unknown ctl command %q\n%s", rest[0], usage)
	}
}

// ctlActors runs `ctl actors ls|get|passivate|probe`.
func ctlActors(ctx context.Context, stdout io.Writer, addr string, asJSON bool, args []string, kind, after, node string, limit int) error {
	if len(args) == 0 {
		//lint:ignore ST1005 a usage text, printed whole
		return errors.New("usage: couponmesh ctl actors ls|get|passivate|probe ...")
	}
	if args[0] == "ls" {
		if len(args) != 1 {
			return errors.New("usage: couponmesh ctl actors ls [--kind K] [--limit N] [--after kind/id] [--node NODE]")
		}
		q := url.Values{"kind": {kind}, "limit": {fmt.Sprint(limit)}, "after": {after}, "node": {node}}
		var res struct {
			Node   string            `json:"node"`
			Actors []admin.ActorInfo `json:"actors"`
			Next   string            `json:"next"`
		}
		if err := call(ctx, addr, http.MethodGet, "/admin/api/actors?"+q.Encode(), nil, &res); err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, res)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "IDENTITY\tSINCE\tMAILBOX")
		for _, x := range res.Actors {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", x.Identity, x.Since.Format(time.RFC3339), x.Mailbox)
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "%d actors on %s", len(res.Actors), res.Node)
		if res.Next != "" {
			fmt.Fprintf(stdout, "; next page: --after %s", res.Next)
		}
		fmt.Fprintln(stdout)
		return nil
	}
	if len(args) != 2 {
		return fmt.Errorf("usage: couponmesh ctl actors %s kind/id", args[0])
	}
	k, id, ok := strings.Cut(args[1], "/")
	if !ok || k == "" || id == "" {
		return fmt.Errorf("identity %q: want kind/id, e.g. coupon/c42", args[1])
	}
	path := "/admin/api/actors/" + url.PathEscape(k) + "/" + url.PathEscape(id)
	switch args[0] {
	case "get":
		var d admin.ActorDetail
		if err := call(ctx, addr, http.MethodGet, path, nil, &d); err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, d)
		}
		printActor(stdout, d)
		return nil
	case "passivate":
		var res map[string]any
		if err := call(ctx, addr, http.MethodPost, path+"/passivate", nil, &res); err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, res)
		}
		fmt.Fprintf(stdout, "%s passivated on %v\n", args[1], res["node"])
		return nil
	case "probe":
		var res admin.ProbeResult
		if err := call(ctx, addr, http.MethodPost, path+"/probe", nil, &res); err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, res)
		}
		fmt.Fprintf(stdout, "%s answered from %s in %s (asked from %s; activated %s)\n", res.Identity, res.Node, res.RTT, res.From, res.ActivatedAt.Format(time.RFC3339Nano))
		return nil
	default:
		return fmt.Errorf("unknown actors command %q: want ls, get, passivate or probe", args[0])
	}
}

func printActor(w io.Writer, d admin.ActorDetail) {
	fmt.Fprintf(w, "identity  %s\nnode      %s (owner in its view: %s)\nmailbox   %d waiting\n", d.Identity, d.Node, d.Owner, d.Mailbox)
	if d.InspectError != "" {
		fmt.Fprintf(w, "inspect   %s\n", d.InspectError)
		return
	}
	in := d.Inspect
	if in == nil {
		return
	}
	fmt.Fprintf(w, "activated %s (%s ago)\nseq       %d\nhubs      %d\nhandled   %d requests\n", in.ActivatedAt.Format(time.RFC3339Nano),
		time.Since(in.ActivatedAt).Round(time.Second), in.Seq, in.Hubs, in.Handled)
	if strings.HasPrefix(d.Identity, couponmesh.KindCoupon+"/") {
		total, per := 0, make([]string, 0, len(d.Watchers))
		for _, nw := range d.Watchers {
			total += nw.Watching
			per = append(per, fmt.Sprintf("%s: %d", cmp.Or(nw.Node, nw.Address), nw.Watching))
		}
		fmt.Fprintf(w, "watching  %d", total)
		if len(per) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(per, ", "))
		}
		fmt.Fprintln(w)
	}
	if !in.Loaded {
		fmt.Fprintln(w, "state     not loaded (database unreachable?)")
	} else {
		var buf bytes.Buffer
		if json.Indent(&buf, in.State, "          ", "  ") == nil {
			fmt.Fprintf(w, "state     %s\n", buf.String())
		}
	}
	if len(in.Recent) == 0 {
		return
	}
	fmt.Fprintln(w, "recent messages (newest first):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  AT\tMETHOD\tTOOK\tOUTCOME")
	for _, m := range in.Recent {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.At.Format("15:04:05.000"), m.Method, (time.Duration(m.Micros) * time.Microsecond).String(), m.Outcome)
	}
	_ = tw.Flush()
}

// parseInterleaved parses flags given before, between and after the
// positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// waitGone polls the members list until member id has left.
func waitGone(ctx context.Context, addr, id string, stdout io.Writer) error {
	for {
		var res struct {
			Members []admin.MemberInfo `json:"members"`
		}
		err := call(ctx, addr, http.MethodGet, "/admin/api/members", nil, &res)
		if err == nil {
			gone := true
			for _, m := range res.Members {
				if m.ID == id && (m.Status == "alive" || m.Status == "suspect") {
					gone = false
				}
			}
			if gone {
				fmt.Fprintln(stdout, "left the cluster")
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still a member: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printMembers(w io.Writer, ms []admin.MemberInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tHTTP\tADMIN\tREMOTE\tACTORS\tSESSIONS\tMSG/S\tID")
	for _, m := range ms {
		name := m.Name
		if m.Self {
			name += " *"
		}
		status := m.Status
		if m.Draining {
			status += ",draining"
		}
		if m.Error != "" {
			status += " (" + m.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f\t%s\n", name, status, m.HTTP, m.Admin, m.Address(), actorCounts(m.Actors), m.Sessions, m.Rate, m.ID)
	}
	_ = tw.Flush()
}

func actorCounts(n map[string]int) string {
	var parts []string
	for k, v := range n {
		if k == "prototopic" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// call sends a request to a node's admin API with the token in
// COUPONMESH_ADMIN_TOKEN (if set) and decodes the JSON reply.
func call(ctx context.Context, addr, method, path string, body, out any) error {
	return admin.Call(ctx, os.Getenv("COUPONMESH_ADMIN_TOKEN"), addr, method, path, body, out)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// printReminders prints the reminder shards as a table, due times relative
// to the asked node's clock.
func printReminders(w io.Writer, res admin.RemindersInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tNODE\tHELD\tFIRING\tNEXT DUE\tNEXT")
	for _, s := range res.Shards {
		next, due := "-", "-"
		if s.Error != "" {
			next = "error: " + s.Error
		} else if s.NextDue != nil {
			due = s.NextDue.UTC().Format("2006-01-02T15:04:05.000Z")
			next = s.Next[0].Target + " " + s.Next[0].Name
			if d := s.NextDue.Sub(res.At); d >= 0 {
				next += " in " + d.Round(time.Millisecond).String()
			} else {
				next += " overdue by " + (-d).Round(time.Millisecond).String()
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\n", s.Shard, s.Node, s.Pending, s.Firing, due, next)
	}
	_ = tw.Flush()
	if res.NextDue != nil {
		fmt.Fprintf(w, "next due %s (asked %s)\n", res.NextDue.UTC().Format(time.RFC3339Nano), res.Node)
	} else {
		fmt.Fprintf(w, "no reminder held (asked %s)\n", res.Node)
	}
}
