package ctl

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/transport/admin"
)

// Flags may come before, between and after the words of a command.
func TestParseInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	kind := fs.String("kind", "", "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterleaved(fs, []string{"--json", "actors", "--kind", "coupon", "ls"})
	if err != nil || !slices.Equal(pos, []string{"actors", "ls"}) || *kind != "coupon" || !*asJSON {
		t.Fatalf("%v %v kind=%q json=%v", pos, err, *kind, *asJSON)
	}
	if _, err := parseInterleaved(fs, []string{"actors", "--nosuch"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nosuch"}, {"drain"}, {"actors"}, {"actors", "get", "c42"}, {"actors", "frob", "coupon/c42"}, {"sessions", "x"}, {"reminders", "x"}} {
		var out strings.Builder
		if err := Run(append([]string{"--admin", "127.0.0.1:1"}, args...), &out); err == nil || strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("ctl %v: %v (want a usage error before any call)", args, err)
		}
	}
}

// The reminders table: one row per shard, due times relative to the asked
// node's clock.
func TestPrintReminders(t *testing.T) {
	at := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	due := at.Add(1500 * time.Millisecond)
	late := at.Add(-2 * time.Second)
	res := admin.RemindersInfo{Node: "n1", At: at, NextDue: &late, Shards: []admin.ShardInfo{
		{ShardStatus: couponmesh.ShardStatus{Shard: 0, Pending: 2, Next: []couponmesh.Reminder{{Target: "coupon/c1", Name: "start", Due: due}}}, Node: "n1", NextDue: &due},
		{ShardStatus: couponmesh.ShardStatus{Shard: 1, Pending: 1, Firing: 1, Next: []couponmesh.Reminder{{Target: "coupon/c2", Name: "expire", Due: late}}}, Node: "n2", NextDue: &late},
		{ShardStatus: couponmesh.ShardStatus{Shard: 2}, Node: "n3", Error: "deadline exceeded"},
	}}
	var out strings.Builder
	printReminders(&out, res)
	for _, want := range []string{
		"0      n1    2     0       2026-12-07T04:00:01.500Z  coupon/c1 start in 1.5s",
		"1      n2    1     1       2026-12-07T03:59:58.000Z  coupon/c2 expire overdue by 2s",
		"2      n3    0     0       -                         error: deadline exceeded",
		"next due 2026-12-07T03:59:58Z (asked n1)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
}

func TestPrintMembers(t *testing.T) {
	ms := []admin.MemberInfo{
		{Member: couponmesh.Member{ID: "id1", Host: "127.0.0.1", Port: 7001, Name: "n1", Status: "alive"}, Actors: map[string]int{"user": 2, "coupon": 3, "prototopic": 1}, Self: true, Rate: 12.5},
		{Member: couponmesh.Member{ID: "id2", Host: "127.0.0.1", Port: 7002, Name: "n2", Status: "alive"}, Draining: true, Error: "timeout"},
	}
	var out strings.Builder
	printMembers(&out, ms)
	if s := out.String(); !strings.Contains(s, "n1 *") || !strings.Contains(s, "coupon=3,user=2") || strings.Contains(s, "prototopic") ||
		!strings.Contains(s, "alive,draining (timeout)") || !strings.Contains(s, "127.0.0.1:7002") || !strings.Contains(s, "12.5") {
		t.Errorf("members table:\n%s", s)
	}
}
