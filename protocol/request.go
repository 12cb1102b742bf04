package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/couponmesh/couponmesh"
)

// Request is one request frame as the server decodes it: the envelope and
// the union of every op's fields (the ...Params types below name which op
// uses which). Unknown fields are ignored (forward compatibility); identity
// never comes from a field, only from the session's token.
type Request struct {
	ID      int64           `json:"id"`
	Op      string          `json:"op"`
	Token   string          `json:"token,omitempty"`   // auth
	Coupons json.RawMessage `json:"coupons,omitempty"` // subscribe: []Sub; unsubscribe: []string
	Coupon  string          `json:"coupon,omitempty"`  // get, claim, follow, unfollow
	Rid     string          `json:"rid,omitempty"`     // claim
	After   int64           `json:"after,omitempty"`   // feed
	Limit   int             `json:"limit,omitempty"`   // feed
}

// The fields of each op's request, as a client encodes them after "id" and
// "op" (ping and wallet have none). Their JSON names are Request's.
type (
	// AuthParams are auth's fields.
	AuthParams struct {
		Token string `json:"token"`
	}
	// SubscribeParams are subscribe's fields.
	SubscribeParams struct {
		Coupons []Sub `json:"coupons"`
	}
	// UnsubscribeParams are unsubscribe's fields.
	UnsubscribeParams struct {
		Coupons []string `json:"coupons"`
	}
	// CouponParams are the fields of get, follow and unfollow.
	CouponParams struct {
		Coupon string `json:"coupon"`
	}
	// ClaimParams are claim's fields.
	ClaimParams struct {
		Coupon string `json:"coupon"`
		Rid    string `json:"rid"`
	}
	// FeedParams are feed's fields (Limit 0: the server's default).
	FeedParams struct {
		After int64 `json:"after"`
		Limit int   `json:"limit,omitempty"`
	}
)

// Sub is one entry of subscribe's coupons: a coupon and the version the
// client holds (0: none, always send the snapshot).
type Sub struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// DecodeRequest parses one client frame. On error it returns a bad_request
// that says what is wrong, and req.ID is set when the id could be read (so
// that the reply can echo it) and is zero otherwise. b is not retained.
func DecodeRequest(b []byte) (req Request, _ *couponmesh.Error) {
	if err := json.Unmarshal(b, &req); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return Request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "malformed JSON at byte %d: %s", se.Offset, se.Error())
		case errors.As(err, &te):
			if te.Field == "" {
				return Request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "a request must be a JSON object, not %s", te.Value)
			}
			if req.ID < 0 {
				req.ID = 0
			}
			return req, fieldTypeError(te)
		default:
			// Only reachable with a broken Unmarshaler; keep the message generic.
			return Request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "malformed JSON")
		}
	}
	if req.ID <= 0 {
		return Request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "id must be a positive integer")
	}
	if req.Op == "" {
		return req, couponmesh.Errorf(couponmesh.CodeBadRequest, "op is required")
	}
	return req, nil
}

func fieldTypeError(te *json.UnmarshalTypeError) *couponmesh.Error {
	if te.Field == "id" {
		return couponmesh.Errorf(couponmesh.CodeBadRequest, "id must be a positive integer")
	}
	want := "a valid value"
	switch te.Type.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Int, reflect.Int64:
		want = "an integer"
	}
	return couponmesh.Errorf(couponmesh.CodeBadRequest, "%s must be %s, not %s", te.Field, want, te.Value)
}

// RequestBody encodes the part of a request frame after its id: the op and
// the fields of the JSON object params encodes to (nil: none), e.g.
// `,"op":"claim","coupon":"c42","rid":"r1"}`. A client encodes a request
// once and frames it with a new id for each attempt (RequestFrame).
func RequestBody(op string, params any) ([]byte, error) {
	body := []byte(`,"op":` + strconv.Quote(op))
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", op, err)
		}
		if len(b) < 2 || b[0] != '{' {
			return nil, fmt.Errorf("%s params must encode to a JSON object", op)
		}
		if len(b) > 2 {
			body = append(body, ',')
			body = append(body, b[1:len(b)-1]...)
		}
	}
	return append(body, '}'), nil
}

// RequestFrame returns the request frame of id and body (RequestBody).
func RequestFrame(id int64, body []byte) []byte {
	frame := make([]byte, 0, len(body)+24)
	frame = append(frame, `{"id":`...)
	frame = strconv.AppendInt(frame, id, 10)
	return append(frame, body...)
}
