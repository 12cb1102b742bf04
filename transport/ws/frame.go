package ws

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/couponmesh/couponmesh"
)

// request is one decoded client frame: the envelope and the union of every
// op's fields. Unknown fields are ignored (forward compatibility); identity
// never comes from a field, only from the session's token.
type request struct {
	ID      int64           `json:"id"`
	Op      string          `json:"op"`
	Token   string          `json:"token"`
	Coupons json.RawMessage `json:"coupons"`
	Coupon  string          `json:"coupon"`
	Rid     string          `json:"rid"`
	After   int64           `json:"after"`
	Limit   int             `json:"limit"`
}

// decodeRequest parses one client frame. On error it returns a bad_request
// that says what is wrong, and req.ID is set when the id could be read (so
// that the reply can echo it) and is zero otherwise. b is not retained.
func decodeRequest(b []byte) (req request, _ *couponmesh.Error) {
	if err := json.Unmarshal(b, &req); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "malformed JSON at byte %d: %s", se.Offset, se.Error())
		case errors.As(err, &te):
			if te.Field == "" {
				return request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "a request must be a JSON object, not %s", te.Value)
			}
			if req.ID < 0 {
				req.ID = 0
			}
			return req, fieldTypeError(te)
		default:
			// Only reachable with a broken Unmarshaler; keep the message generic.
			return request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "malformed JSON")
		}
	}
	if req.ID <= 0 {
		return request{}, couponmesh.Errorf(couponmesh.CodeBadRequest, "id must be a positive integer")
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

// reply is the envelope of an answer; exactly one of OK and Error is set.
type reply struct {
	ID    int64             `json:"id,omitempty"`
	OK    any               `json:"ok,omitempty"`
	Error *couponmesh.Error `json:"error,omitempty"`
}

// empty is the payload of ops that answer ok {}.
type empty struct{}

// okFrame encodes {"id":N,"ok":payload}.
func okFrame(id int64, payload any) ([]byte, error) {
	if payload == nil {
		payload = empty{}
	}
	b, err := json.Marshal(reply{ID: id, OK: payload})
	if err != nil {
		return nil, fmt.Errorf("encode reply to request %d: %w", id, err)
	}
	return b, nil
}

// couponFrame is okFrame(id, couponReply{c}) made from c's JSON encoding,
// which readers of active coupons share (couponmesh.CouponReaderNow).
func couponFrame(id int64, coupon []byte) []byte {
	b := make([]byte, 0, len(coupon)+48)
	b = append(b, '{')
	if id != 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, ',')
	}
	b = append(b, `"ok":{"coupon":`...)
	b = append(b, coupon...)
	return append(b, "}}"...)
}

// errorFrame encodes {"id":N,"error":{"code":…,"message":…}}; the id is
// omitted when zero (it could not be read from the request).
func errorFrame(id int64, e *couponmesh.Error) []byte {
	b, err := json.Marshal(reply{ID: id, Error: e})
	if err != nil {
		// An *Error is two strings: this cannot fail.
		panic(err)
	}
	return b
}
