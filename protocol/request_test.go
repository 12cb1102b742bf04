package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol/protocoltest"
)

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		in     string
		id     int64
		op     string
		errMsg string // "" means success
	}{
		{in: `{"id":1,"op":"ping"}`, id: 1, op: "ping"},
		{in: `{"id":9007199254740991,"op":"get","coupon":"c1","extra":{"x":[1]}}`, id: 9007199254740991, op: "get"},
		{in: `{"id":2,"op":"claim","coupon":"c","rid":"r","user":"mallory"}`, id: 2, op: "claim"},
		{in: `{"id":3,"op":"get","coupon":5}`, id: 3, errMsg: "coupon must be a string"},
		{in: `{"id":3,"op":"feed","limit":1.5}`, id: 3, errMsg: "limit must be an integer"},
		{in: `{"id":"x","op":"get"}`, errMsg: "id must be a positive integer"},
		{in: `{"id":1e40,"op":"get"}`, errMsg: "id must be a positive integer"},
		{in: `{"id":-1,"op":"get","coupon":5}`, errMsg: "coupon must be a string"},
		{in: `{"id":4}`, id: 4, errMsg: "op is required"},
		{in: `null`, errMsg: "id must be a positive integer"},
		{in: `"str"`, errMsg: "must be a JSON object"},
		{in: `{`, errMsg: "malformed JSON"},
		{in: "{\"id\":1,\"op\":\"ping\"}\n{}", errMsg: "malformed JSON"},
	}
	for _, tc := range cases {
		req, err := DecodeRequest([]byte(tc.in))
		if tc.errMsg == "" {
			if err != nil || req.ID != tc.id || req.Op != tc.op {
				t.Errorf("decode %s = %+v, %v", tc.in, req, err)
			}
			continue
		}
		if err == nil || err.Code != couponmesh.CodeBadRequest || !strings.Contains(err.Message, tc.errMsg) {
			t.Errorf("decode %s: error %v, want bad_request with %q", tc.in, err, tc.errMsg)
		}
		if req.ID != tc.id {
			t.Errorf("decode %s: id %d, want %d", tc.in, req.ID, tc.id)
		}
	}
}

// FuzzDecodeRequest: no input panics; every rejection is a bad_request with
// a message and a reply frame that is one line of valid JSON; an echoed id
// is positive; an accepted request has an id and an op. The golden
// requests are seeds.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"ping"}`,
		`{"id":2,"op":"subscribe","coupons":[{"id":"c1","version":3}]}`,
		`{"id":3,"op":"claim","coupon":"c1","rid":"r"}`,
		`{"id":4,"op":"feed","after":10,"limit":5}`,
		`{"id":"5"}`, `[]`, `{`, ``, `{"id":1,"op":"a\nb"}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	for _, op := range protocoltest.Names(f, protocoltest.Requests) {
		f.Add(protocoltest.Frame(f, protocoltest.Requests, op))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeRequest(b)
		if err == nil {
			if req.ID <= 0 || req.Op == "" {
				t.Fatalf("accepted %q as %+v", b, req)
			}
			return
		}
		if err.Code != couponmesh.CodeBadRequest || err.Message == "" {
			t.Fatalf("rejection of %q: %+v", b, err)
		}
		if req.ID < 0 {
			t.Fatalf("negative id echoed for %q", b)
		}
		frame := ErrorFrame(req.ID, err)
		if bytes.IndexByte(frame, '\n') >= 0 || !json.Valid(frame) || !utf8.Valid(frame) {
			t.Fatalf("error frame %q is not one line of valid JSON", frame)
		}
	})
}
