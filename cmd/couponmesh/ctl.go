package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

const ctlUsage = `usage: couponmesh ctl [--admin HOST:PORT] [--json] COMMAND (flags may follow the command)
  members            the members this node knows: name, addresses, status, actors, sessions
  drain NODE [--wait] drain NODE (name or member ID): sessions move to the other nodes, actors
                     passivate, the node leaves the cluster and exits; --wait until it is gone`

// runCtl talks to a node's admin API.
func runCtl(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	admin := fs.String("admin", envOr("COUPONMESH_ADMIN_ADDR", "127.0.0.1:8081"), "admin address of any node")
	asJSON := fs.Bool("json", false, "print JSON (for scripts)")
	wait := fs.Bool("wait", false, "drain: wait until the node has left the cluster")
	fs.Usage = func() { fmt.Fprintln(fs.Output(), ctlUsage) }
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New(ctlUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch rest[0] {
	case "members":
		var res struct {
			Members []MemberInfo `json:"members"`
		}
		if err := adminCall(ctx, *admin, http.MethodGet, "/admin/api/members", nil, &res); err != nil {
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
		if err := adminCall(ctx, *admin, http.MethodPost, "/admin/api/drain", DrainRequest{Node: node}, &res); err != nil {
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
			return waitGone(ctx, *admin, fmt.Sprint(res["id"]), stdout)
		}
		return nil
	default:
		return fmt.Errorf("unknown ctl command %q\n%s", rest[0], ctlUsage)
	}
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
func waitGone(ctx context.Context, admin, id string, stdout io.Writer) error {
	for {
		var res struct {
			Members []MemberInfo `json:"members"`
		}
		err := adminCall(ctx, admin, http.MethodGet, "/admin/api/members", nil, &res)
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

func printMembers(w io.Writer, ms []MemberInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tHTTP\tADMIN\tREMOTE\tACTORS\tSESSIONS\tID")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, status, m.HTTP, m.Admin, m.Address(), actorCounts(m.Actors), m.Sessions, m.ID)
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

// adminCall sends a request to a node's admin API and decodes the JSON reply.
func adminCall(ctx context.Context, addr, method, path string, body, out any) error {
	if addr == "" {
		return errors.New("no admin address")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if t := os.Getenv("COUPONMESH_ADMIN_TOKEN"); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin %s: %w", addr, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin %s: %s: %s", addr, resp.Status, e.Error)
		}
		return fmt.Errorf("admin %s: %s", addr, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
