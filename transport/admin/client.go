package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxReply bounds an admin API answer read by Call or forwarded.
const maxReply = 16 << 20

// Call sends a request to the admin API at addr (host:port) with token (if
// set) and decodes the JSON reply into out (nil: discard it). A status of
// 300 or more is an error carrying the reply's "error".
func Call(ctx context.Context, token, addr, method, path string, body, out any) error {
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
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
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
