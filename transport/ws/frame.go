package ws

import (
	"strconv"

	"github.com/couponmesh/couponmesh"
	"github.com/couponmesh/couponmesh/protocol"
)

// The frames of protocol v1 are package protocol's; these are the names
// the session code uses for them.
type (
	request = protocol.Request
	empty   = protocol.Empty
)

func decodeRequest(b []byte) (protocol.Request, *couponmesh.Error) { return protocol.DecodeRequest(b) }

func okFrame(id int64, payload any) ([]byte, error) { return protocol.OKFrame(id, payload) }

func errorFrame(id int64, e *couponmesh.Error) []byte { return protocol.ErrorFrame(id, e) }

// couponFrame is okFrame(id, protocol.CouponReply{c}) made by hand from c's
// JSON encoding, which readers of active coupons share
// (couponmesh.CouponReaderNow): a get answered from memory encodes nothing.
// Checked against okFrame and the golden get reply (golden_test.go).
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
