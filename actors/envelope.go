package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/couponmesh/couponmesh"
)

// Kind names of the grains.
const (
	KindCoupon    = couponmesh.KindCoupon
	KindUser      = couponmesh.KindUser
	KindReminders = couponmesh.KindReminders // reminder shards: reminders/0 … reminders/15
)

// Request wraps a method call for a grain in the protobuf envelope.
func Request(method string, payload any) *cluster.GrainRequest {
	data, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("actors: encode %s: %v", method, err)) // our own types always encode
	}
	return &cluster.GrainRequest{MessageTypeName: method, MessageData: data}
}

// Respond answers the request being handled with v (JSON) or with err.
// Domain errors keep their code; anything else is answered as the code
// couponmesh.AsError gives it.
func Respond(ctx actor.Context, v any, err error) {
	recordOutcome(ctx, err)
	if ctx.Sender() == nil {
		return
	}
	ctx.Respond(replyTo(ctx.ActorSystem(), ctx.Sender(), v, err))
}

// Replier answers a request after the message that carried it was handled,
// e.g. once the request's journal entry is durable: it keeps the sender
// (ctx.Sender(), the caller's future) that ctx.Respond would have used.
// Safe to use from any goroutine; answer once.
type Replier struct {
	root   *actor.RootContext
	sender *actor.PID
}

// Later returns the Replier of the request being handled.
func Later(ctx actor.Context) Replier {
	return Replier{root: ctx.ActorSystem().Root, sender: ctx.Sender()}
}

// Respond answers with v (JSON) or err, as Respond does.
func (r Replier) Respond(v any, err error) {
	if r.sender == nil || r.root == nil {
		return
	}
	r.root.Send(r.sender, replyTo(r.root.ActorSystem(), r.sender, v, err))
}

// Answerer returns how to answer the request being handled: with Respond
// while it is being handled, through its saved sender (Later) once handled
// has been called, e.g. when its journal entry is durable, in a later
// message. before, if set, runs before every answer. Answer once.
func Answerer(ctx actor.Context, before func()) (answer func(v any, err error), handled func()) {
	r := Later(ctx)
	done := false
	rec, _ := ctx.Actor().(outcomeRecorder)
	var id uint64
	if rec != nil {
		id = rec.current() // the ring's number of the request being handled
	}
	return func(v any, err error) {
			if before != nil {
				before()
			}
			if !done {
				Respond(ctx, v, err)
				return
			}
			r.Respond(v, err)
			if rec != nil {
				rec.recordLate(id, outcomeCode(err)) // on the grain's goroutine: answers run in its messages
			}
		}, func() {
			done = true
		}
}

// Reply builds the protobuf reply for v or err.
func Reply(v any, err error) any {
	if err != nil {
		e := couponmesh.AsError(err)
		return &cluster.GrainErrorResponse{Reason: string(e.Code), Message: e.Message}
	}
	data, mErr := json.Marshal(v)
	if mErr != nil {
		return &cluster.GrainErrorResponse{Reason: string(couponmesh.CodeInternal), Message: "internal error"}
	}
	return &cluster.GrainResponse{MessageData: data}
}

// Decode unpacks a reply into out (may be nil). Error replies become
// *couponmesh.Error; an unexpected type is an internal error.
func Decode(resp any, out any) error {
	switch r := resp.(type) {
	case *localResponse:
		if out == nil {
			return nil
		}
		return decodeLocal(r.v, out)
	case *cluster.GrainResponse:
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(r.MessageData, out); err != nil {
			return fmt.Errorf("decode reply: %w", err)
		}
		return nil
	case *cluster.GrainErrorResponse:
		code := couponmesh.Code(r.Reason)
		if !code.Valid() {
			code = couponmesh.CodeInternal
		}
		return &couponmesh.Error{Code: code, Message: r.Message}
	case nil:
		return fmt.Errorf("no reply: %w", couponmesh.ErrUnavailable)
	default:
		return fmt.Errorf("unexpected reply %T", resp)
	}
}

// Unpack decodes the payload of a request into v, answering bad_request to
// the sender when it does not decode.
func Unpack(ctx actor.Context, req *cluster.GrainRequest, v any) bool {
	if err := json.Unmarshal(req.MessageData, v); err != nil {
		Respond(ctx, nil, couponmesh.Errorf(couponmesh.CodeBadRequest, "bad %s payload", req.MessageTypeName))
		return false
	}
	return true
}

// Unknown answers a request for a method the grain does not have.
func Unknown(ctx actor.Context, req *cluster.GrainRequest) {
	Respond(ctx, nil, couponmesh.Errorf(couponmesh.CodeBadRequest, unknownMethod+"%q", req.MessageTypeName))
}

const unknownMethod = "unknown method "

// IsUnknownMethod reports whether err is a grain's answer to a method it
// does not have (Unknown): a node of an older build.
func IsUnknownMethod(err error) bool {
	var e *couponmesh.Error
	return errors.As(err, &e) && e.Code == couponmesh.CodeBadRequest && strings.HasPrefix(e.Message, unknownMethod)
}

var errNoCluster = errors.New("actors: cluster not started")
