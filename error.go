package couponmesh

import (
	"context"
	"errors"
	"fmt"
)

// Code is an error code from the closed list of protocol v1.
type Code string

// The closed list of error codes (DESIGN.md, protocol v1).
const (
	CodeBadRequest     Code = "bad_request"
	CodeUnauthorized   Code = "unauthorized"
	CodeForbidden      Code = "forbidden"
	CodeNotFound       Code = "not_found"
	CodeSoldOut        Code = "sold_out"
	CodeExpired        Code = "expired"
	CodeNotStarted     Code = "not_started" // a scheduled coupon before its startsAt
	CodeAlreadyClaimed Code = "already_claimed"
	CodeRateLimited    Code = "rate_limited"
	CodeUnavailable    Code = "unavailable"
	CodeInternal       Code = "internal"
)

// Codes lists every code, in the order of the protocol documentation.
var Codes = []Code{
	CodeBadRequest, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeSoldOut,
	CodeExpired, CodeNotStarted, CodeAlreadyClaimed, CodeRateLimited, CodeUnavailable, CodeInternal,
}

// Valid reports whether c is on the closed list.
func (c Code) Valid() bool {
	for _, k := range Codes {
		if k == c {
			return true
		}
	}
	return false
}

// Error is the one domain error type. Its Message is safe to show to a client;
// internal details are logged where they happen and never put in Message.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError maps any error to an *Error: domain errors pass through, deadlines
// and cancellations become unavailable, everything else internal (with a
// generic message, so that no internal detail reaches a client).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		return &Error{Code: CodeUnavailable, Message: "service temporarily unavailable, retry"}
	}
	return &Error{Code: CodeInternal, Message: "internal error"}
}

// ErrorCode returns the code AsError would give err.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	return AsError(err).Code
}

// ErrUnavailable marks a failure of a dependency (database, cluster) whose
// outcome is known not to have happened or is unknown; clients may retry.
var ErrUnavailable = errors.New("unavailable")
