package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/couponmesh/couponmesh"
)

// maxResponse bounds the HTTP response bodies the helpers read.
const maxResponse = 16 << 20

// DevLogin asks a node in dev mode for a token (POST /api/dev/login) and
// returns it. baseURL is the node's HTTP root, e.g. "http://localhost:8080".
func DevLogin(ctx context.Context, baseURL, user string, role couponmesh.Role) (string, error) {
	a := &API{BaseURL: baseURL}
	var out struct {
		Token string `json:"token"`
	}
	err := a.do(ctx, http.MethodPost, "/api/dev/login", map[string]string{"user": user, "role": string(role)}, &out)
	return out.Token, err
}

// API calls the HTTP API of a node. The zero value needs BaseURL set;
// Token is sent as a bearer token when not empty. Safe for concurrent use
// when not modified.
type API struct {
	BaseURL    string       // e.g. "http://localhost:8080"
	Token      string       // session token for the write endpoints
	HTTPClient *http.Client // default http.DefaultClient
}

// NewAPI returns an API for baseURL that authenticates with token.
func NewAPI(baseURL, token string) *API { return &API{BaseURL: baseURL, Token: token} }

// CreateCoupon creates a coupon (POST /api/coupons).
func (a *API) CreateCoupon(ctx context.Context, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	var c couponmesh.Coupon
	err := a.do(ctx, http.MethodPost, "/api/coupons", spec, &c)
	return c, err
}

// UpdateCoupon changes the fields spec sets (PUT /api/coupons/{id}).
func (a *API) UpdateCoupon(ctx context.Context, id string, spec couponmesh.CouponSpec) (couponmesh.Coupon, error) {
	var c couponmesh.Coupon
	err := a.do(ctx, http.MethodPut, "/api/coupons/"+url.PathEscape(id), spec, &c)
	return c, err
}

// UpdateCoupons applies many coupon updates in one request (POST
// /api/coupons/bulk-update): each spec names its coupon in ID and changes the
// fields it sets, as UpdateCoupon would. It returns one result per spec, in
// order, each the coupon after its update (durable) or that item's error; a
// failed item leaves the others done. The error is for the request as a
// whole: none or more than couponmesh.MaxBulkUpdates specs, a body over the
// server's limit, no or a bad token, or the node not answering.
func (a *API) UpdateCoupons(ctx context.Context, specs []couponmesh.CouponSpec) ([]couponmesh.BulkUpdateResult, error) {
	if specs == nil {
		specs = []couponmesh.CouponSpec{} // an empty list, not null: the server names the count
	}
	var out struct {
		Results []couponmesh.BulkUpdateResult `json:"results"`
	}
	in := struct {
		Updates []couponmesh.CouponSpec `json:"updates"`
	}{specs}
	if err := a.do(ctx, http.MethodPost, "/api/coupons/bulk-update", in, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != len(specs) {
		return nil, fmt.Errorf("client: bulk update: %d results for %d updates", len(out.Results), len(specs))
	}
	return out.Results, nil
}

// WithdrawCoupon withdraws a coupon (DELETE /api/coupons/{id}).
func (a *API) WithdrawCoupon(ctx context.Context, id string) (couponmesh.Coupon, error) {
	var c couponmesh.Coupon
	err := a.do(ctx, http.MethodDelete, "/api/coupons/"+url.PathEscape(id), nil, &c)
	return c, err
}

// Coupon reads a coupon (GET /api/coupons/{id}).
func (a *API) Coupon(ctx context.Context, id string) (couponmesh.Coupon, error) {
	var c couponmesh.Coupon
	err := a.do(ctx, http.MethodGet, "/api/coupons/"+url.PathEscape(id), nil, &c)
	return c, err
}

// Browse lists coupons (GET /api/coupons).
func (a *API) Browse(ctx context.Context, q couponmesh.BrowseQuery) (couponmesh.BrowsePage, error) {
	v := url.Values{}
	if q.Merchant != "" {
		v.Set("merchant", q.Merchant)
	}
	if q.Status != "" {
		v.Set("status", string(q.Status))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	path := "/api/coupons"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var p couponmesh.BrowsePage
	err := a.do(ctx, http.MethodGet, path, nil, &p)
	return p, err
}

// do sends a JSON request and decodes a 2xx JSON answer into out. Error
// statuses come back as *couponmesh.Error: the server's error body, or one
// derived from the status when the body is not one.
func (a *API) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	hc := a.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("client: %s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return statusError(resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("client: %s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

func statusError(status int, body []byte) *couponmesh.Error {
	var eb struct {
		Error *couponmesh.Error `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil && eb.Error.Code.Valid() {
		return eb.Error
	}
	code := couponmesh.CodeInternal
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
		code = couponmesh.CodeBadRequest
	case http.StatusUnauthorized:
		code = couponmesh.CodeUnauthorized
	case http.StatusForbidden:
		code = couponmesh.CodeForbidden
	case http.StatusNotFound:
		code = couponmesh.CodeNotFound
	case http.StatusTooManyRequests:
		code = couponmesh.CodeRateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		code = couponmesh.CodeUnavailable
	}
	return couponmesh.Errorf(code, "HTTP %d %s", status, http.StatusText(status))
}
