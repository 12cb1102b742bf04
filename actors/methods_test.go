package actors

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/couponmesh/couponmesh"
)

// tableGrain is a grain with a Methods table, on a real actor system: a
// sum answered at once, an echo answered in a later message (as a journal
// write is), and a count of the answers published before.
type tableGrain struct {
	published int
	later     func(string, error) // the echo waiting for its second message
}

type addReq struct {
	A, B int
}

type releaseEcho struct{ text string }

var tableMethods = NewMethods(func(g *tableGrain) { g.published++ },
	Handle("t.add", func(_ *tableGrain, _ actor.Context, r addReq) (int, error) {
		if r.A < 0 {
			return 0, couponmesh.Errorf(couponmesh.CodeBadRequest, "negative")
		}
		return r.A + r.B, nil
	}),
	Handle("t.published", func(g *tableGrain, _ actor.Context, _ Empty) (int, error) { return g.published, nil }),
	HandleLater("t.echo", func(g *tableGrain, _ actor.Context, s string, reply func(string, error)) { g.later = reply }),
)

func (g *tableGrain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *cluster.GrainRequest:
		tableMethods.Serve(g, ctx, m)
	case releaseEcho:
		if g.later != nil {
			g.later(m.text, nil)
			g.later = nil
		}
	}
}

// Each method decodes its own request type and encodes its own answer; a
// bad payload and an unknown method are bad_request; a HandleLater answer
// given in a later message reaches the caller; the table's hook runs
// before every answer.
func TestMethodsTable(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &tableGrain{} }))
	call := func(method string, payload any, out any) error {
		t.Helper()
		req := Request(method, payload)
		if s, ok := payload.(string); ok && strings.HasPrefix(s, "raw:") {
			req.MessageData = []byte(strings.TrimPrefix(s, "raw:"))
		}
		res, err := sys.Root.RequestFuture(pid, req, 5*time.Second).Result()
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return Decode(res, out)
	}
	code := func(err error) couponmesh.Code {
		var e *couponmesh.Error
		if !errors.As(err, &e) {
			return ""
		}
		return e.Code
	}

	var sum int
	if err := call("t.add", addReq{A: 2, B: 3}, &sum); err != nil || sum != 5 {
		t.Fatalf("add: %d %v", sum, err)
	}
	if err := call("t.add", addReq{A: -1}, &sum); code(err) != couponmesh.CodeBadRequest || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("add's own error: %v", err)
	}
	if err := call("t.add", "raw:{not json", &sum); code(err) != couponmesh.CodeBadRequest || !strings.Contains(err.Error(), "bad t.add payload") {
		t.Fatalf("bad payload: %v", err)
	}
	if err := call("t.nope", Empty{}, nil); code(err) != couponmesh.CodeBadRequest || !strings.Contains(err.Error(), `unknown method "t.nope"`) || !IsUnknownMethod(err) {
		t.Fatalf("unknown method: %v", err)
	}
	// Only the unknown method's answer is (Service.Claim falls back to the
	// older methods on it), not a bad_request of a method the grain has.
	if err := call("t.add", "raw:{not json", &sum); IsUnknownMethod(err) {
		t.Fatalf("a bad payload taken for an unknown method: %v", err)
	}
	// An Empty request reads no payload (callers send {} or nothing).
	var published int
	if err := call("t.published", "raw:", &published); err != nil || published != 2 {
		t.Fatalf("published: %d %v; want 2 (the two answers of add)", published, err)
	}

	echo := make(chan string, 1)
	go func() {
		var s string
		if err := call("t.echo", "ignored", &s); err != nil {
			t.Error(err)
		}
		echo <- s
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The echo is answered only once released: until then the
		// release may come before the request, so retry it.
		sys.Root.Send(pid, releaseEcho{text: "later"})
		select {
		case s := <-echo:
			if s != "later" {
				t.Fatalf("echo answered %q", s)
			}
			if got := tableMethods.Names(); strings.Join(got, ",") != "t.add,t.echo,t.published" || !tableMethods.Has("t.echo") || tableMethods.Has("t.nope") {
				t.Fatalf("names %v", got)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the later answer never came")
		}
	}
}

func TestMethodsRegisteredTwicePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `"t.x" registered twice`) {
			t.Fatalf("recovered %v", r)
		}
	}()
	h := Handle("t.x", func(*tableGrain, actor.Context, Empty) (Empty, error) { return Empty{}, nil })
	NewMethods(nil, h, h)
}
